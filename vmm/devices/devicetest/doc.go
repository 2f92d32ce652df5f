// Package devicetest holds fakes and helpers for testing device models on
// the host: an IRQ line that records its levels and byte-wide port access
// shorthands. Test code only; it must not be imported by a device.
package devicetest
