// Package acpi emulates the fixed hardware of a hardware-reduced ACPI
// platform: the sleep control register (SLP_TYP bits 2-4, SLP_EN bit 5; writing
// SLP_EN with the S5 sleep type powers the machine off), the sleep status
// register (WAK_STS bit 7, write one to clear) and the reset register (writing
// the reset value resets the machine). The port numbers, S5 sleep type and
// reset value come from the caller and must match the FADT and DSDT the arch
// package builds (0x600, 0x601, 0x602, _S5 = 5, reset value 0x01).
//
// The power-off and reset callbacks run on the vCPU thread that made the
// write; they must only signal the machine and return. This package must not
// import KVM code or start goroutines.
package acpi
