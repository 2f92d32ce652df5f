package virtio

import (
	"encoding/binary"
	"fmt"

	"github.com/smolvm/smolvm/vmm/devices/pci"
)

// MSI-X table layout (PCI local bus spec, MSI-X capability).
const (
	msixEntrySize    = 16
	msixVectorMasked = 1 // vector control bit 0
	msixCtlEnable    = 0x8000
	msixCtlFuncMask  = 0x4000
)

// msixTable is the table and pending bits; guarded by Transport.irqMu.
type msixTable struct {
	entries [][msixEntrySize]byte
	pending []bool
}

func (m *msixTable) init(n int) {
	m.entries = make([][msixEntrySize]byte, n)
	m.pending = make([]bool, n)
	for i := range m.entries {
		m.entries[i][12] = msixVectorMasked // masked at reset
	}
}

// vectorOrNone is what the driver reads back for a vector it wrote:
// NoVector when the table has no such entry.
func (m *msixTable) vectorOrNone(v uint16) uint16 {
	if int(v) < len(m.entries) {
		return v
	}
	return NoVector
}

func (m *msixTable) masked(v int) bool { return m.entries[v][12]&msixVectorMasked != 0 }

func (m *msixTable) message(v int) (uint64, uint32) {
	e := &m.entries[v]
	return binary.LittleEndian.Uint64(e[0:]), binary.LittleEndian.Uint32(e[8:])
}

func (m *msixTable) readTable(off uint64, data []byte) {
	for i := range data {
		o := off + uint64(i)
		if v := o / msixEntrySize; v < uint64(len(m.entries)) {
			data[i] = m.entries[v][o%msixEntrySize]
		}
	}
}

func (m *msixTable) readPBA(off uint64, data []byte) {
	for i := range data {
		for b := range 8 {
			if v := (off+uint64(i))*8 + uint64(b); v < uint64(len(m.pending)) && m.pending[v] {
				data[i] |= 1 << b
			}
		}
	}
}

// msixMsg is an interrupt to send once irqMu is released.
type msixMsg struct {
	addr uint64
	data uint32
}

// msixCtl is the capability's enable and function-mask bits.
type msixCtl struct{ enabled, funcMasked bool }

// writeTable applies a table write and returns the pending messages that an
// unmask released.
func (m *msixTable) writeTable(off uint64, data []byte, ctl msixCtl) []msixMsg {
	for i, b := range data {
		o := off + uint64(i)
		if v := o / msixEntrySize; v < uint64(len(m.entries)) {
			if o%msixEntrySize == 12 {
				b &= msixVectorMasked // other vector control bits are reserved
			} else if o%msixEntrySize > 12 {
				continue
			}
			m.entries[v][o%msixEntrySize] = b
		}
	}
	return m.releasePending(ctl)
}

func (m *msixTable) releasePending(ctl msixCtl) []msixMsg {
	if !ctl.enabled || ctl.funcMasked {
		return nil
	}
	var out []msixMsg
	for v, p := range m.pending {
		if p && !m.masked(v) {
			m.pending[v] = false
			a, d := m.message(v)
			out = append(out, msixMsg{a, d})
		}
	}
	return out
}

// msixState reads the capability's control bits.
func (t *Transport) msixState() msixCtl {
	c := t.cfg.Uint16(t.msixCap + 2)
	return msixCtl{enabled: c&msixCtlEnable != 0, funcMasked: c&msixCtlFuncMask != 0}
}

// signal raises an interrupt for a queue (isrQueue) or a configuration
// change (isrConfig): an MSI-X message on vector when MSI-X is enabled
// (pending while masked), else the ISR bit and INTx.
func (t *Transport) signal(vector uint16, isrBit uint8) {
	ctl := t.msixState()
	t.irqMu.Lock()
	var fire []msixMsg
	if ctl.enabled {
		if int(vector) < len(t.msix.entries) {
			if ctl.funcMasked || t.msix.masked(int(vector)) {
				t.msix.pending[vector] = true
			} else {
				a, d := t.msix.message(int(vector))
				fire = append(fire, msixMsg{a, d})
			}
		}
	} else {
		t.isr |= isrBit
		t.setINTxLocked(true)
	}
	t.irqMu.Unlock()
	t.deliver(fire)
}

func (t *Transport) deliver(msgs []msixMsg) {
	for _, m := range msgs {
		if err := t.irq.SignalMSI(m.addr, m.data); err != nil {
			t.irqError(fmt.Errorf("virtio: MSI-X to %#x data %#x: %w", m.addr, m.data, err))
		}
	}
}

func (t *Transport) irqError(err error) {
	t.irqMu.Lock()
	defer t.irqMu.Unlock()
	t.irqErrs++
	t.lastErr = err
}

// setINTxLocked drives INTx (if the guest has not disabled it) and the PCI
// status bit. Callers hold irqMu.
func (t *Transport) setINTxLocked(high bool) {
	if high && !t.cfg.INTxEnabled() {
		high = false
	}
	if high == t.intxHigh {
		return
	}
	t.intxHigh = high
	t.cfg.SetINTxStatus(high)
	if err := t.irq.SetINTx(high); err != nil {
		t.irqErrs++
		t.lastErr = fmt.Errorf("virtio: INTx level %v: %w", high, err)
	}
}

// readISR returns the ISR status and clears it, lowering INTx.
func (t *Transport) readISR() uint8 {
	t.irqMu.Lock()
	defer t.irqMu.Unlock()
	v := t.isr
	t.isr = 0
	t.setINTxLocked(false)
	return v
}

// ConfigRead implements pci.ConfigInterceptor: reads of the PCI
// configuration access capability's data window read the BAR.
func (t *Transport) ConfigRead(off int, data []byte) {
	win := t.pciCfgCap + 16
	if off+len(data) <= win || off >= win+4 {
		return
	}
	var buf [4]byte
	if n, addr, ok := t.pciCfgTarget(); ok {
		t.BARRead(TransportBAR, addr, buf[:n])
	}
	for i := range data {
		if o := off + i - win; o >= 0 && o < 4 {
			data[i] = buf[o]
		}
	}
}

// ConfigWrite implements pci.ConfigInterceptor: MSI-X enable and mask
// changes, and writes through the PCI configuration access capability.
func (t *Transport) ConfigWrite(off int, data []byte) {
	end := off + len(data)
	if off < t.msixCap+4 && end > t.msixCap+2 {
		ctl := t.msixState()
		t.irqMu.Lock()
		if ctl.enabled {
			t.setINTxLocked(false)
		}
		fire := t.msix.releasePending(ctl)
		t.irqMu.Unlock()
		t.deliver(fire)
	}
	if off < pci.OffCommand+2 && end > pci.OffCommand {
		// INTx disabled: the line drops; enabled again with the ISR still
		// set (and MSI-X off): it rises again.
		enabled := t.msixState().enabled
		t.irqMu.Lock()
		t.setINTxLocked(t.isr != 0 && !enabled)
		t.irqMu.Unlock()
	}
	win := t.pciCfgCap + 16
	if off < win+4 && end > win {
		if n, addr, ok := t.pciCfgTarget(); ok {
			var buf [4]byte
			t.cfg.Read(win, buf[:])
			t.BARWrite(TransportBAR, addr, buf[:n])
		}
	}
}

// pciCfgTarget reads the access capability's bar, offset and length.
func (t *Transport) pciCfgTarget() (n int, addr uint64, ok bool) {
	bar := t.cfg.Uint8(t.pciCfgCap + 4)
	addr = uint64(t.cfg.Uint32(t.pciCfgCap + 8))
	n = int(t.cfg.Uint32(t.pciCfgCap + 12))
	if bar != TransportBAR || (n != 1 && n != 2 && n != 4) || addr+uint64(n) > BARSize {
		return 0, 0, false
	}
	return n, addr, true
}
