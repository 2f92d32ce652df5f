// Package serial emulates a 16550A-compatible 8250 UART (COM1 on a PC: ports
// 0x3F8-0x3FF, IRQ 4), the guest's console.
//
// Guest output goes to an io.Writer through a bounded buffer drained by one
// goroutine the Serial owns (Close stops it), so a slow writer never stalls a
// vCPU: while the buffer is full the line status register reports the
// transmitter busy (THRE and TEMT clear) and no THRE interrupt is raised, which
// makes Linux's interrupt-driven tty wait; a byte written anyway (the polled
// console gives up waiting after about 10 ms) is dropped and counted. Host
// input enters through Input into a bounded receive FIFO and raises the RX
// interrupt.
//
// Interrupts are level semantics on a devices.IRQLine: asserted while an
// enabled interrupt is pending, deasserted otherwise; MCR OUT2 does not gate
// the line. Transmission is instantaneous (no baud-rate timing).
//
// This package must not import KVM code; its only goroutine is the output
// writer.
package serial
