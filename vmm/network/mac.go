package network

import (
	"crypto/rand"
	"fmt"
	"net"
)

// RandomMAC returns a random unicast, locally administered MAC address:
// each VM (and each restored clone) gets its own.
func RandomMAC() [6]byte {
	var m [6]byte
	rand.Read(m[:]) // never fails (crypto/rand panics rather than return an error)
	m[0] = m[0]&^1 | 2
	return m
}

// ParseMAC reads aa:bb:cc:dd:ee:ff and refuses multicast or all-zero
// addresses.
func ParseMAC(s string) ([6]byte, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return [6]byte{}, fmt.Errorf("%w: MAC %q: want six colon-separated hex bytes", ErrBadSpec, s)
	}
	m := [6]byte(hw)
	if m[0]&1 != 0 || m == ([6]byte{}) {
		return [6]byte{}, fmt.Errorf("%w: MAC %q is not a unicast address", ErrBadSpec, s)
	}
	return m, nil
}
