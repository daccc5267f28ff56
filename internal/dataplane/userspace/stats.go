package userspace

import "sync/atomic"

// Stats are the backend-wide packet counters since New, for metrics. Drops
// are counted by reason; per-SA traffic is in Counters.
type Stats struct {
	// TxPackets counts ESP packets sent, RxPackets inner packets handed to
	// the device (segments held for coalescing count when they are taken;
	// should their write fail later, DropTUNWrite counts them as well).
	TxPackets, RxPackets uint64

	// Outbound drops (packets read from the device).
	DropNoPolicy   uint64 // no policy covers the packet
	DropNoSA       uint64 // a policy matched but its Child SA has no outbound SA
	DropMalformed  uint64 // not a well-formed IP packet
	DropSeal       uint64 // sequence numbers exhausted, or sealing failed otherwise
	DropSendFailed uint64 // the socket refused the ESP packet
	DropTooBig     uint64 // the ESP packet would exceed the buffer

	// Inbound drops (ESP packets handed to HandleESP).
	DropUnknownSPI     uint64 // no inbound SA with this SPI
	DropAuth           uint64 // ICV did not verify
	DropReplay         uint64 // replayed or too old
	DropInvalid        uint64 // bad length or padding, or an inner packet that is not IP
	DropPolicyMismatch uint64 // inner addresses outside the negotiated selectors (RFC 4301 §5.2)
	DropDummy          uint64 // dummy packets (RFC 4303 §2.6), dropped by design
	DropTUNWrite       uint64 // the device refused the inner packet
}

type counter int

const (
	cTx counter = iota
	cRx
	cNoPolicy
	cNoSA
	cMalformed
	cSeal
	cSendFailed
	cTooBig
	cUnknownSPI
	cAuth
	cReplay
	cInvalid
	cPolicyMismatch
	cDummy
	cTUNWrite
	numCounters
)

// counters are not padded against false sharing: the outbound ones are
// written by the single device reader and the inbound ones by the receive
// goroutines, and a shared cache line costs little next to the system call
// every packet makes anyway.
type counters [numCounters]atomic.Uint64

func (c *counters) inc(k counter) { c[k].Add(1) }

func (c *counters) add(k counter, n uint64) {
	if n != 0 {
		c[k].Add(n)
	}
}

func (c *counters) snapshot() Stats {
	return Stats{
		TxPackets:          c[cTx].Load(),
		RxPackets:          c[cRx].Load(),
		DropNoPolicy:       c[cNoPolicy].Load(),
		DropNoSA:           c[cNoSA].Load(),
		DropMalformed:      c[cMalformed].Load(),
		DropSeal:           c[cSeal].Load(),
		DropSendFailed:     c[cSendFailed].Load(),
		DropTooBig:         c[cTooBig].Load(),
		DropUnknownSPI:     c[cUnknownSPI].Load(),
		DropAuth:           c[cAuth].Load(),
		DropReplay:         c[cReplay].Load(),
		DropInvalid:        c[cInvalid].Load(),
		DropPolicyMismatch: c[cPolicyMismatch].Load(),
		DropDummy:          c[cDummy].Load(),
		DropTUNWrite:       c[cTUNWrite].Load(),
	}
}
