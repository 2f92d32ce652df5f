package amd64

import (
	"encoding/binary"
	"fmt"
)

// Page table entry bits.
const (
	ptepresent  = 1 << 0
	ptewritable = 1 << 1
	ptelarge    = 1 << 7 // PS: 2 MiB page in a page directory

	pageSize2M = 2 << 20
)

// IdentityMapSize is how much of the physical address space the boot page
// tables map 1:1 (with 2 MiB pages, which every x86-64 CPU supports, unlike
// 1 GiB pages).
const IdentityMapSize = PageDirCount << 30

// PageTablesEnd is the first address past the boot page tables.
const PageTablesEnd = PDAddr + PageDirCount*0x1000

// WritePageTables writes identity-mapped page tables for the first 4 GiB
// into mem: PML4 at PML4Addr, one PDPT at PDPTAddr and four page
// directories of 2 MiB pages from PDAddr. CR3 = PML4Addr.
func WritePageTables(mem []byte) error {
	if uint64(len(mem)) < PageTablesEnd {
		return fmt.Errorf("amd64: page tables at %#x..%#x: %w (guest RAM is %#x bytes)",
			PML4Addr, PageTablesEnd, ErrMemoryTooSmall, len(mem))
	}
	clear(mem[PML4Addr:PageTablesEnd])
	le := binary.LittleEndian
	le.PutUint64(mem[PML4Addr:], PDPTAddr|ptepresent|ptewritable)
	for i := range uint64(PageDirCount) {
		pd := PDAddr + i*0x1000
		le.PutUint64(mem[PDPTAddr+8*i:], pd|ptepresent|ptewritable)
		for j := range uint64(512) {
			phys := (i*512 + j) * pageSize2M
			le.PutUint64(mem[pd+8*j:], phys|ptepresent|ptewritable|ptelarge)
		}
	}
	return nil
}
