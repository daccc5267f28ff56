package transport

import (
	"errors"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrServing is returned when Serve is called on a socket that is already
// serving.
var ErrServing = errors.New("transport: socket is already serving")

// rxState is the receive loop's scratch: one slot per datagram of a batch,
// each with its own buffer, source address and control message space. It is
// allocated once per Serve, so the loop itself does not allocate.
type rxState struct {
	s     *Socket
	msgs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []sockaddr
	oob   []byte
	bufs  []*Buffer
	pkt   Packet
	ender BatchEnder // the handler, if it wants to know
	t     tally
	used  int    // slots the previous read filled, to be reset
	drops uint32 // the kernel's drop count as last reported

	// Results of readFn, which runs inside RawConn.Read.
	n      int
	errno  syscall.Errno
	readFn func(fd uintptr) bool
}

func newRxState(s *Socket) *rxState {
	rx := &rxState{
		s:     s,
		msgs:  make([]unix.Mmsghdr, s.batch),
		iovs:  make([]unix.Iovec, s.batch),
		names: make([]sockaddr, s.batch),
		oob:   make([]byte, s.batch*rxOOBSize),
		bufs:  make([]*Buffer, s.batch),
	}
	for i := range rx.msgs {
		rx.bufs[i] = getBuffer()
		rx.iovs[i].Base = &rx.bufs[i].b[0]
		rx.iovs[i].SetLen(BufferSize)
		h := &rx.msgs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&rx.names[i]))
		h.Iov = &rx.iovs[i]
		h.SetIovlen(1)
		h.Control = &rx.oob[i*rxOOBSize]
	}
	rx.used = s.batch
	rx.readFn = rx.read
	return rx
}

func (rx *rxState) release() {
	for i, b := range rx.bufs {
		b.Release()
		rx.bufs[i] = nil
		rx.iovs[i].Base = nil
	}
}

// read performs one receive system call; it returns false to have the
// runtime poller wait for the socket to become readable.
func (rx *rxState) read(fd uintptr) bool {
	// The kernel overwrites these per message; give the slots back their
	// full capacity.
	for i := range rx.used {
		h := &rx.msgs[i].Hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.SetControllen(rxOOBSize)
		h.Flags = 0
	}
	for {
		var n int
		var e syscall.Errno
		if rx.s.batch > 1 && !rx.s.noRecvBatch.Load() {
			n, e = sysRecvmmsg(fd, rx.msgs)
			if batchUnavailable(e) {
				rx.s.noRecvBatch.Store(true)
				rx.t[cRxBatchFallbacks]++
				continue
			}
		} else {
			e = recvmsg(fd, &rx.msgs[0])
			n = 1
		}
		switch e {
		case 0:
			rx.n, rx.errno = n, 0
			rx.used = n
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			rx.n, rx.errno = 0, e
			rx.used = len(rx.msgs) // the kernel may have touched any slot
		}
		return true
	}
}

// Serve runs the receive loop, handing IKE messages and ESP packets to h
// until the socket is closed, and then returns nil. It runs at most once at
// a time per socket.
func (s *Socket) Serve(h Handler) error {
	if !s.serving.CompareAndSwap(false, true) {
		return ErrServing
	}
	defer s.serving.Store(false)
	rx := newRxState(s)
	defer rx.release()
	rx.ender, _ = h.(BatchEnder)
	for {
		if err := rx.readBatch(h); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
	}
}

// readBatch waits for and dispatches one batch.
func (rx *rxState) readBatch(h Handler) error {
	s := rx.s
	err := s.rc.Read(rx.readFn)
	if err != nil {
		s.stats.add(&rx.t)
		return err
	}
	t := &rx.t
	if rx.errno != 0 {
		// Unconnected UDP sockets report no ICMP errors, so anything here
		// is unusual but not a reason to stop serving.
		t[cRxErrors]++
		s.stats.add(t)
		return nil
	}
	t[cRxBatches]++
	delivered := false
	for i := range rx.n {
		m := &rx.msgs[i]
		t[cRxDatagrams]++
		t[cRxBytes] += uint64(m.Len)
		ctl := parseControl(rx.oob[i*rxOOBSize : i*rxOOBSize+int(m.Hdr.Controllen)])
		if ctl.haveDrops {
			// A cumulative 32-bit count: the difference survives a wrap.
			t[cDropKernel] += uint64(ctl.drops - rx.drops)
			rx.drops = ctl.drops
		}
		if m.Hdr.Flags&unix.MSG_TRUNC != 0 || m.Len > BufferSize {
			t[cDropTruncated]++
			continue
		}
		kind, data := Classify(rx.bufs[i].b[:m.Len], s.encap)
		switch kind {
		case KindKeepalive:
			t[cKeepalives]++
			continue
		case KindInvalid:
			t[cDropRunt]++
			continue
		}
		local := ctl.local
		if !local.IsValid() {
			local = s.local.Addr()
		}
		if !s.localAllowed(local) {
			t[cDropNotLocal]++
			continue
		}
		p := &rx.pkt
		*p = Packet{
			Kind:    kind,
			Data:    data,
			Local:   local,
			Remote:  parseSockaddr(&rx.names[i]),
			IfIndex: ctl.ifindex,
			Conn:    s,
			buf:     rx.bufs[i],
			lim:     &s.lim,
		}
		if kind == KindIKE {
			t[cRxIKE]++
			h.HandleIKE(p)
		} else {
			t[cRxESP]++
			h.HandleESP(p)
		}
		if p.buf == nil {
			// The handler kept the buffer; this slot needs a new one.
			rx.bufs[i] = getBuffer()
			rx.iovs[i].Base = &rx.bufs[i].b[0]
		}
		*p = Packet{}
		delivered = true
	}
	if delivered && rx.ender != nil {
		rx.ender.EndBatch()
	}
	s.stats.add(t)
	return nil
}
