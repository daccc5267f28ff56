package transport

import "sync/atomic"

// Stats is a snapshot of one socket's counters, for a metrics layer to
// export. All counters only grow.
type Stats struct {
	RxDatagrams uint64 // datagrams read from the socket, whatever became of them
	RxBytes     uint64 // UDP payload octets of those datagrams
	RxBatches   uint64 // receive system calls that returned at least one datagram
	RxIKE       uint64 // IKE messages delivered
	RxESP       uint64 // ESP-in-UDP packets delivered
	Keepalives  uint64 // NAT keepalives received and dropped

	DropRunt      uint64 // too short for what their first octets announce
	DropTruncated uint64 // larger than BufferSize (RxBytes counts their full length)
	DropNotLocal  uint64 // sent to a local address outside SetLocalAddrs
	// DropKernel counts datagrams the kernel dropped before they could be
	// read, mostly because the receive buffer was full (SO_RXQ_OVFL). The
	// kernel reports it with the next datagram that does arrive.
	DropKernel uint64
	RxErrors   uint64 // unexpected receive errors
	// RetainWaits counts the times a handler's Retain had to wait because
	// MaxRetained buffers were held: the workers are not keeping up.
	RetainWaits uint64

	TxDatagrams uint64 // datagrams handed to the kernel
	TxBytes     uint64 // UDP payload octets of those, marker included
	TxBatches   uint64 // send system calls that sent at least one datagram
	TxErrors    uint64 // datagrams the kernel refused or that were invalid

	// RxBatchFallbacks and TxBatchFallbacks count switches from
	// recvmmsg/sendmmsg to one datagram per system call because the batch
	// call was unavailable (old kernel, seccomp filter).
	RxBatchFallbacks uint64
	TxBatchFallbacks uint64
}

type counter int

const (
	cRxDatagrams counter = iota
	cRxBytes
	cRxBatches
	cRxIKE
	cRxESP
	cKeepalives
	cDropRunt
	cDropTruncated
	cDropNotLocal
	cDropKernel
	cRxErrors
	cRetainWaits
	cTxDatagrams
	cTxBytes
	cTxBatches
	cTxErrors
	cRxBatchFallbacks
	cTxBatchFallbacks
	numCounters
)

// counters are updated once per batch from a local tally, so that the
// receive loop pays one atomic add per counter per system call, not per
// datagram.
type counters [numCounters]atomic.Uint64

type tally [numCounters]uint64

func (c *counters) add(t *tally) {
	for i, v := range t {
		if v != 0 {
			c[i].Add(v)
			t[i] = 0
		}
	}
}

func (c *counters) snapshot() Stats {
	return Stats{
		RxDatagrams:      c[cRxDatagrams].Load(),
		RxBytes:          c[cRxBytes].Load(),
		RxBatches:        c[cRxBatches].Load(),
		RxIKE:            c[cRxIKE].Load(),
		RxESP:            c[cRxESP].Load(),
		Keepalives:       c[cKeepalives].Load(),
		DropRunt:         c[cDropRunt].Load(),
		DropTruncated:    c[cDropTruncated].Load(),
		DropNotLocal:     c[cDropNotLocal].Load(),
		DropKernel:       c[cDropKernel].Load(),
		RxErrors:         c[cRxErrors].Load(),
		RetainWaits:      c[cRetainWaits].Load(),
		TxDatagrams:      c[cTxDatagrams].Load(),
		TxBytes:          c[cTxBytes].Load(),
		TxBatches:        c[cTxBatches].Load(),
		TxErrors:         c[cTxErrors].Load(),
		RxBatchFallbacks: c[cRxBatchFallbacks].Load(),
		TxBatchFallbacks: c[cTxBatchFallbacks].Load(),
	}
}
