package vsock

import (
	"encoding/binary"
	"fmt"
)

// HeaderSize is the size of struct virtio_vsock_hdr on the wire.
const HeaderSize = 44

// Well-known context IDs. The host is always CID 2; smolvm gives every guest
// CID 3 (the hybrid unix-socket host side needs no global CID allocation).
const (
	HostCID  uint64 = 2
	GuestCID uint64 = 3
)

// Socket types (virtio_vsock_hdr.type). Only streams are offered.
const (
	TypeStream    uint16 = 1
	TypeSeqpacket uint16 = 2
)

// Op is virtio_vsock_hdr.op.
type Op uint16

// Operations defined by the virtio specification (5.10.6).
const (
	OpInvalid       Op = 0
	OpRequest       Op = 1
	OpResponse      Op = 2
	OpRst           Op = 3
	OpShutdown      Op = 4
	OpRW            Op = 5
	OpCreditUpdate  Op = 6
	OpCreditRequest Op = 7
)

var opNames = [...]string{"INVALID", "REQUEST", "RESPONSE", "RST", "SHUTDOWN", "RW", "CREDIT_UPDATE", "CREDIT_REQUEST"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint16(o))
}

// Shutdown flags carried by an OpShutdown packet.
const (
	ShutdownRcv  uint32 = 1 // the sender will receive no more data
	ShutdownSend uint32 = 2 // the sender will send no more data
	ShutdownBoth        = ShutdownRcv | ShutdownSend
)

// Header is struct virtio_vsock_hdr: every packet on the rx and tx queues
// starts with it, little-endian. Len is the payload length that follows.
type Header struct {
	SrcCID   uint64
	DstCID   uint64
	SrcPort  uint32
	DstPort  uint32
	Len      uint32
	Type     uint16
	Op       Op
	Flags    uint32
	BufAlloc uint32 // sender's receive buffer size
	FwdCnt   uint32 // bytes the sender has consumed from its receive buffer
}

// Encode writes h into b, which must hold at least HeaderSize bytes.
func (h *Header) Encode(b []byte) {
	_ = b[HeaderSize-1]
	le := binary.LittleEndian
	le.PutUint64(b[0:], h.SrcCID)
	le.PutUint64(b[8:], h.DstCID)
	le.PutUint32(b[16:], h.SrcPort)
	le.PutUint32(b[20:], h.DstPort)
	le.PutUint32(b[24:], h.Len)
	le.PutUint16(b[28:], h.Type)
	le.PutUint16(b[30:], uint16(h.Op))
	le.PutUint32(b[32:], h.Flags)
	le.PutUint32(b[36:], h.BufAlloc)
	le.PutUint32(b[40:], h.FwdCnt)
}

// Bytes returns h encoded in a new slice.
func (h *Header) Bytes() []byte {
	b := make([]byte, HeaderSize)
	h.Encode(b)
	return b
}

// DecodeHeader parses the first HeaderSize bytes of b. It checks only the
// length; what the fields mean is judged by the connection table.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: header is %d bytes, want %d", ErrBadPacket, len(b), HeaderSize)
	}
	le := binary.LittleEndian
	return Header{
		SrcCID:   le.Uint64(b[0:]),
		DstCID:   le.Uint64(b[8:]),
		SrcPort:  le.Uint32(b[16:]),
		DstPort:  le.Uint32(b[20:]),
		Len:      le.Uint32(b[24:]),
		Type:     le.Uint16(b[28:]),
		Op:       Op(le.Uint16(b[30:])),
		Flags:    le.Uint32(b[32:]),
		BufAlloc: le.Uint32(b[36:]),
		FwdCnt:   le.Uint32(b[40:]),
	}, nil
}

func (h Header) String() string {
	return fmt.Sprintf("%s %d:%d->%d:%d len=%d type=%d flags=%#x buf_alloc=%d fwd_cnt=%d",
		h.Op, h.SrcCID, h.SrcPort, h.DstCID, h.DstPort, h.Len, h.Type, h.Flags, h.BufAlloc, h.FwdCnt)
}

// Event IDs on the event queue (struct virtio_vsock_event, one le32).
const (
	EventTransportReset uint32 = 0
	EventSize                  = 4
)

// ConfigSize is the size of the device configuration (le64 guest_cid).
const ConfigSize = 8
