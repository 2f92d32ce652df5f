// Package i8042 emulates the minimum of a PC keyboard controller (ports 0x60
// data and 0x64 status/command) that a Linux guest needs: command 0xFE (pulse
// the reset line) calls the reset callback, which is how Linux's reboot path
// falls back after ACPI reset.
//
// Decision: the controller is present but has no keyboard or mouse behind it.
// Its self-test (0xAA) answers 0x55, the interface tests answer 0x00, the
// command byte reads and writes, the mouse-port loopback (0xD3) echoes, and a
// byte sent to either device is answered at once with 0xFE and the status
// register's timeout bit, so a guest that probes it (i8042.nopnp, or an FADT
// that claims an 8042) fails its keyboard and mouse probes immediately
// instead of waiting. Normally Linux does not probe it at all: smolvm's FADT
// does not claim an 8042 and the DSDT has no PNP0303 device.
//
// Interrupts are optional (SetIRQs): without lines every answer is polled;
// with them the keyboard and mouse lines follow the head of the output
// buffer and the command byte's enable bits, and fall between bytes so each
// byte makes an edge.
//
// This package must not import KVM code or start goroutines.
package i8042
