package serial

// Register offsets from the base port.
const (
	regData = 0 // RBR (read) / THR (write); DLL while LCR.DLAB
	regIER  = 1 // interrupt enable; DLM while LCR.DLAB
	regIIR  = 2 // interrupt identification (read) / FCR (write)
	regLCR  = 3
	regMCR  = 4
	regLSR  = 5
	regMSR  = 6
	regSCR  = 7

	// NumPorts is how many consecutive ports the UART decodes.
	NumPorts = 8
)

// IER bits.
const (
	ierRDA  = 0x01 // received data available
	ierTHRE = 0x02 // transmitter holding register empty
	ierRLS  = 0x04 // receiver line status
	ierMS   = 0x08 // modem status
	ierMask = 0x0f // a 16550A keeps only the low four bits
)

// IIR values (interrupt identity, highest priority first) and FIFO bits.
const (
	iirNone     = 0x01
	iirRLS      = 0x06
	iirRDA      = 0x04
	iirTHRE     = 0x02
	iirMS       = 0x00
	iirFIFOBits = 0xc0 // both set while FIFOs are enabled (16550A)
)

// FCR bits.
const (
	fcrEnable  = 0x01
	fcrClearRX = 0x02
	fcrClearTX = 0x04
	fcrTrigger = 0xc0 // receive trigger level, kept for the guest to read back
)

// LCR and MCR bits.
const (
	lcrDLAB = 0x80
	mcrDTR  = 0x01
	mcrRTS  = 0x02
	mcrOUT1 = 0x04
	mcrOUT2 = 0x08
	mcrLoop = 0x10
	mcrMask = 0x1f
)

// LSR bits.
const (
	lsrDR     = 0x01 // data ready
	lsrOE     = 0x02 // overrun error
	lsrErrors = 0x1e // OE, PE, FE, BI: cleared by reading LSR
	lsrTHRE   = 0x20
	lsrTEMT   = 0x40
)

// MSR bits: deltas in the low nibble, line states in the high one.
const (
	msrDCTS   = 0x01
	msrDDSR   = 0x02
	msrTERI   = 0x04
	msrDDCD   = 0x08
	msrDeltas = 0x0f
	msrCTS    = 0x10
	msrDSR    = 0x20
	msrRI     = 0x40
	msrDCD    = 0x80
	// msrConnected is what an idle, connected line shows outside loopback.
	msrConnected = msrDCD | msrDSR | msrCTS
)

// loopbackFIFO is the hardware receive FIFO depth that bounds bytes looped
// back from THR in loopback mode (Linux sizes the FIFO this way).
const loopbackFIFO = 16
