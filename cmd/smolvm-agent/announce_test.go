package main

import (
	"bytes"
	"encoding/hex"
	"net"
	"testing"
)

// TestGarpFrame checks the announcement byte by byte against a frame written
// out from RFC 826 / RFC 5227 by hand.
func TestGarpFrame(t *testing.T) {
	mac, _ := net.ParseMAC("02:53:4d:00:00:07")
	want, _ := hex.DecodeString("ffffffffffff" + "02534d000007" + "0806" + // Ethernet
		"0001" + "0800" + "06" + "04" + "0001" + // Ethernet/IPv4, request
		"02534d000007" + "c0a87f02" + "000000000000" + "c0a87f02") // sender = target = 192.168.127.2
	if got := garpFrame(mac, net.ParseIP("192.168.127.2")); !bytes.Equal(got, want) {
		t.Fatalf("frame\n got %x\nwant %x", got, want)
	}
}

func TestAnnounceErrors(t *testing.T) {
	for _, tc := range []struct{ name, ifname string }{
		{"no such interface", "smolvm-nope0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := announce(tc.ifname); err == nil {
				t.Fatal("announce succeeded")
			}
		})
	}
	if err := renewLease("lo"); err == nil {
		t.Fatal("renewLease without the guest's DHCP script succeeded")
	}
}
