package amd64

import "fmt"

// ResetVectorAddr is where a CPU starts after reset (F000:FFF0), and where
// Linux jumps when it reboots "through the BIOS" (reboot=b, and the
// fallback of its default reboot on hardware-reduced ACPI machines without
// EFI, which is what this layout is).
const ResetVectorAddr = 0xFFFF0

// resetStub is 16-bit real-mode code for the reset vector. There is no
// firmware behind it: a guest that jumps here wants a reset, so it asks for
// one the two ways the VMM's devices understand, then halts:
//
//	B0 01      mov al, ACPIResetValue
//	BA 02 06   mov dx, ACPIResetPort
//	EE         out dx, al            ; ACPI reset register
//	B0 FE      mov al, 0xFE
//	E6 64      out I8042CommandPort, al ; i8042 "pulse reset line"
//	F4         hlt
//	EB FD      jmp short hlt
var resetStub = []byte{
	0xB0, ACPIResetValue,
	0xBA, ACPIResetPort & 0xFF, ACPIResetPort >> 8,
	0xEE,
	0xB0, 0xFE,
	0xE6, I8042CommandPort,
	0xF4,
	0xEB, 0xFD,
}

// WriteResetVector writes the reset stub at ResetVectorAddr in mem. Without
// it a guest that reboots through the BIOS runs into zeroed memory and
// hangs instead of resetting.
func WriteResetVector(mem []byte) error {
	if uint64(len(mem)) < ResetVectorAddr+16 {
		return fmt.Errorf("amd64: reset vector at %#x: %w (guest RAM is %#x bytes)", ResetVectorAddr, ErrMemoryTooSmall, len(mem))
	}
	clear(mem[ResetVectorAddr : ResetVectorAddr+16])
	copy(mem[ResetVectorAddr:], resetStub)
	return nil
}
