package amd64

import (
	"errors"
	"fmt"
	"testing"
)

// portWrite is one OUT instruction's effect.
type portWrite struct {
	port uint16
	val  uint8
}

// runStub interprets the few real-mode instructions the reset stub may use,
// from the reset vector until it halts twice (the halt loop), and returns
// its port writes. Anything else is an error.
func runStub(mem []byte) ([]portWrite, error) {
	var (
		al     uint8
		dx     uint16
		writes []portWrite
		halts  int
	)
	ip := uint64(ResetVectorAddr)
	for steps := 0; steps < 100; steps++ {
		if ip+3 > uint64(len(mem)) || ip >= ResetVectorAddr+16 {
			return writes, fmt.Errorf("ip %#x left the reset vector", ip)
		}
		switch op := mem[ip]; op {
		case 0xB0: // mov al, imm8
			al, ip = mem[ip+1], ip+2
		case 0xBA: // mov dx, imm16
			dx, ip = uint16(mem[ip+1])|uint16(mem[ip+2])<<8, ip+3
		case 0xEE: // out dx, al
			writes, ip = append(writes, portWrite{dx, al}), ip+1
		case 0xE6: // out imm8, al
			writes, ip = append(writes, portWrite{uint16(mem[ip+1]), al}), ip+2
		case 0xF4: // hlt
			if halts++; halts == 2 {
				return writes, nil
			}
			ip++
		case 0xEB: // jmp short
			ip = uint64(int64(ip+2) + int64(int8(mem[ip+1])))
		default:
			return writes, fmt.Errorf("unexpected opcode %#x at %#x", op, ip)
		}
	}
	return writes, fmt.Errorf("no halt loop within 100 instructions")
}

func TestWriteResetVector(t *testing.T) {
	mem := make([]byte, 0x100000)
	for i := ResetVectorAddr; i < len(mem); i++ {
		mem[i] = 0x90 // leftovers must not survive
	}
	if err := WriteResetVector(mem); err != nil {
		t.Fatal(err)
	}
	writes, err := runStub(mem)
	if err != nil {
		t.Fatal(err)
	}
	want := []portWrite{{ACPIResetPort, ACPIResetValue}, {I8042CommandPort, 0xFE}}
	if fmt.Sprint(writes) != fmt.Sprint(want) {
		t.Errorf("stub writes %v, want %v (ACPI reset, then i8042 reset)", writes, want)
	}
	if mem[0xFFFFF] != 0 {
		t.Errorf("tail of the reset vector not cleared")
	}
	if err := WriteResetVector(make([]byte, 0xFFFF8)); !errors.Is(err, ErrMemoryTooSmall) {
		t.Errorf("short memory: err = %v", err)
	}
	// The ACPI tables must end before the reset vector.
	if ACPIEnd > ResetVectorAddr {
		t.Errorf("ACPIEnd %#x overlaps the reset vector %#x", ACPIEnd, ResetVectorAddr)
	}
}
