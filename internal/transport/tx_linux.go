package transport

import (
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Constant payloads sent by reference: the kernel only reads them.
var (
	nonESPMarker   = [NonESPMarkerLen]byte{}
	keepaliveBytes = [1]byte{keepaliveOctet}
)

// txState is one sender's scratch, pooled per socket so that concurrent
// senders neither share nor allocate it.
type txState struct {
	s     *Socket
	msgs  []unix.Mmsghdr
	iovs  []unix.Iovec // two per message: marker and message
	names []sockaddr
	oob   []byte
	sizes []int // payload length per slot, for the counters

	// Arguments and results of writeFn, which runs inside RawConn.Write.
	off, end int
	single   bool // send msgs[off] alone even if batching is possible
	batched  bool // the last call was sendmmsg
	sent     int
	errno    syscall.Errno
	writeFn  func(fd uintptr) bool
}

func newTxState(s *Socket) *txState {
	tx := &txState{
		s:     s,
		msgs:  make([]unix.Mmsghdr, s.batch),
		iovs:  make([]unix.Iovec, 2*s.batch),
		names: make([]sockaddr, s.batch),
		oob:   make([]byte, s.batch*txOOBSize),
		sizes: make([]int, s.batch),
	}
	for i := range tx.msgs {
		h := &tx.msgs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&tx.names[i]))
		h.Iov = &tx.iovs[2*i]
	}
	tx.writeFn = tx.write
	return tx
}

// write sends msgs[off:end] with one system call.
func (tx *txState) write(fd uintptr) bool {
	for {
		var n int
		var e syscall.Errno
		tx.batched = tx.end-tx.off > 1 && !tx.single && !tx.s.noSendBatch.Load()
		if tx.batched {
			n, e = sysSendmmsg(fd, tx.msgs[tx.off:tx.end])
		} else {
			e = sendmsg(fd, &tx.msgs[tx.off])
			n = 1
		}
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		case 0:
			tx.sent, tx.errno = n, 0
		default:
			tx.sent, tx.errno = 0, e
		}
		return true
	}
}

// prepare checks d and fills slot i for it, returning the UDP payload
// length. Nothing is written to the slot unless d is valid.
func (tx *txState) prepare(i int, d *Datagram) (int, error) {
	s := tx.s
	remote := d.Remote.Addr().Unmap()
	if !d.Remote.IsValid() || remote.Is4() == s.v6 {
		return 0, ErrAddressFamily
	}
	src := d.Local.Unmap()
	if !src.IsValid() || src.IsUnspecified() {
		src = netip.Addr{} // the kernel chooses
	} else if src.Is4() == s.v6 {
		return 0, ErrAddressFamily
	}
	marker := false
	data := d.Data
	switch d.Kind {
	case KindIKE:
		marker = s.encap
	case KindESP:
		if !s.encap {
			return 0, ErrNotEncap
		}
	case KindKeepalive:
		if !s.encap {
			return 0, ErrNotEncap
		}
		data = keepaliveBytes[:]
	default:
		return 0, ErrKind
	}

	iov := tx.iovs[2*i : 2*i+2]
	nio, size := 0, len(data)
	if marker {
		iov[0].Base = &nonESPMarker[0]
		iov[0].SetLen(NonESPMarkerLen)
		nio++
		size += NonESPMarkerLen
	}
	if len(data) > 0 {
		iov[nio].Base = &data[0]
		iov[nio].SetLen(len(data))
		nio++
	}
	h := &tx.msgs[i].Hdr
	h.SetIovlen(nio)
	h.Namelen = putSockaddr(&tx.names[i], netip.AddrPortFrom(remote, d.Remote.Port()), s.v6)
	h.Control = nil
	h.SetControllen(0)
	if src.IsValid() {
		oob := tx.oob[i*txOOBSize : (i+1)*txOOBSize]
		h.Control = &oob[0]
		h.SetControllen(putPktinfo(oob, src, s.v6))
	}
	return size, nil
}

// Send sends ds, batched into as few system calls as the socket's batch size
// allows. A datagram that is invalid or refused by the kernel is skipped and
// counted; the first such error is returned with the number sent.
func (s *Socket) Send(ds []Datagram) (int, error) {
	tx := s.txs.Get().(*txState)
	defer s.txs.Put(tx)
	tx.single = false
	var t tally
	var firstErr error
	fail := func(err error) {
		t[cTxErrors]++
		if firstErr == nil {
			firstErr = err
		}
	}
	total := 0
	for len(ds) > 0 {
		// Fill up to a batch of slots with the valid datagrams.
		n := 0
		for len(ds) > 0 && n < len(tx.msgs) {
			size, err := tx.prepare(n, &ds[0])
			ds = ds[1:]
			if err != nil {
				fail(err)
				continue
			}
			tx.sizes[n] = size
			n++
		}
		tx.off, tx.end = 0, n
		for tx.off < tx.end {
			if err := s.rc.Write(tx.writeFn); err != nil {
				fail(err)
				tx.clear(n)
				s.stats.add(&t)
				return total, firstErr
			}
			switch {
			case tx.errno == 0:
				if tx.single {
					// sendmmsg failed where sendmsg works: it is
					// filtered or missing, so stay with sendmsg.
					tx.single = false
					s.noSendBatch.Store(true)
					t[cTxBatchFallbacks]++
				}
				t[cTxBatches]++
				for _, sz := range tx.sizes[tx.off : tx.off+tx.sent] {
					t[cTxDatagrams]++
					t[cTxBytes] += uint64(sz)
				}
				total += tx.sent
				tx.off += tx.sent
			case tx.batched && batchUnavailable(tx.errno):
				// Retry the first datagram alone. EPERM is also what a
				// netfilter rule returns, so only a sendmsg that works
				// proves the batch call itself is the problem.
				tx.single = true
			default:
				// The kernel refused the first datagram (no route, a
				// source address that is no longer local, ...): skip it.
				tx.single = false
				fail(tx.errno)
				tx.off++
			}
		}
		tx.clear(n)
	}
	s.stats.add(&t)
	return total, firstErr
}

// clear drops the references to callers' data so that a pooled txState
// does not keep their buffers alive.
func (tx *txState) clear(n int) {
	for i := range 2 * n {
		tx.iovs[i].Base = nil
	}
}
