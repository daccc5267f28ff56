package transport

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	lo4  = netip.MustParseAddr("127.0.0.1")
	lo4b = netip.MustParseAddr("127.0.0.2") // all of 127/8 is local on Linux
	lo6  = netip.MustParseAddr("::1")
	any4 = netip.IPv4Unspecified()
	any6 = netip.IPv6Unspecified()
)

// received is a copy of a delivered Packet.
type received struct {
	kind   Kind
	data   []byte
	local  netip.Addr
	remote netip.AddrPort
	conn   Conn
}

// recorder copies every packet into a channel; with echo set it answers each
// IKE message from the address it was sent to.
type recorder struct {
	ch   chan received
	echo bool
	errs chan error
}

func newRecorder() *recorder {
	return &recorder{ch: make(chan received, 1024), errs: make(chan error, 1024)}
}

func (r *recorder) HandleIKE(p *Packet) {
	r.ch <- received{KindIKE, bytes.Clone(p.Data), p.Local, p.Remote, p.Conn}
	if r.echo {
		if err := p.Conn.SendIKE(p.Local, p.Remote, p.Data); err != nil {
			r.errs <- err
		}
	}
}

func (r *recorder) HandleESP(p *Packet) {
	r.ch <- received{KindESP, bytes.Clone(p.Data), p.Local, p.Remote, p.Conn}
}

func (r *recorder) next(t *testing.T) received {
	t.Helper()
	select {
	case p := <-r.ch:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no packet delivered")
		return received{}
	}
}

// ipv6Loopback fails under CI, where ::1 is a prerequisite, and skips
// elsewhere.
func ipv6Loopback(t *testing.T) {
	t.Helper()
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err == nil {
		c.Close()
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("IPv6 loopback unavailable: %v", err)
	}
	t.Skipf("IPv6 loopback unavailable: %v", err)
}

func listen(t *testing.T, cfg ListenConfig) *Socket {
	t.Helper()
	s, err := Listen(cfg)
	if err != nil {
		t.Fatalf("Listen(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// serve runs s.Serve(h) and checks on cleanup that it returned nil once the
// socket was closed.
func serve(t *testing.T, s *Socket, h Handler) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Serve(h) }()
	t.Cleanup(func() {
		s.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v after Close", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
}

// client is a plain UDP socket standing for a peer.
func client(t *testing.T, addr netip.Addr) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func sendTo(t *testing.T, c *net.UDPConn, to netip.AddrPort, b []byte) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatal(err)
	}
}

func readFrom(t *testing.T, c *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
}

// waitStats polls until cond holds for the socket's counters: they are
// published after the handler calls of a batch.
func waitStats(t *testing.T, s *Socket, cond func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := s.Stats()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters never reached the expected state: %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
}

func ikeMsg(tag byte) []byte {
	m := bytes.Clone(ikeHeader)
	m[7] = tag
	return m
}

func TestReceiveClassifiesNATT(t *testing.T) {
	for _, addr := range []netip.Addr{lo4, lo6} {
		t.Run(addr.String(), func(t *testing.T) {
			if addr.Is6() {
				ipv6Loopback(t)
			}
			s := listen(t, ListenConfig{Addr: netip.AddrPortFrom(addr, 0), Encap: true})
			r := newRecorder()
			serve(t, s, r)
			c := client(t, addr)
			to := s.LocalAddr()
			esp := []byte{0xC0, 0xFF, 0xEE, 0x01, 0, 0, 0, 7, 1, 2, 3, 4}
			sendTo(t, c, to, []byte{0xFF})                        // keepalive
			sendTo(t, c, to, []byte{0, 0})                        // runt
			sendTo(t, c, to, withMarker(ikeHeader[:20]))          // runt IKE
			sendTo(t, c, to, esp[:5])                             // runt ESP
			sendTo(t, c, to, withMarker(ikeMsg(1)))               // IKE
			sendTo(t, c, to, esp)                                 // ESP
			sendTo(t, c, to, withMarker(append(ikeMsg(2), 0xAB))) // IKE with a payload byte

			caddr := c.LocalAddr().(*net.UDPAddr).AddrPort()
			want := []received{
				{kind: KindIKE, data: ikeMsg(1)},
				{kind: KindESP, data: esp},
				{kind: KindIKE, data: append(ikeMsg(2), 0xAB)},
			}
			for _, w := range want {
				p := r.next(t)
				if p.kind != w.kind || !bytes.Equal(p.data, w.data) {
					t.Fatalf("got %v %x, want %v %x", p.kind, p.data, w.kind, w.data)
				}
				if p.local != addr || p.remote.Addr().Unmap() != addr || p.remote.Port() != caddr.Port() {
					t.Fatalf("addresses: local %v remote %v, want %v and %v", p.local, p.remote, addr, caddr)
				}
				if p.conn != Conn(s) {
					t.Fatal("packet does not name the socket it came on")
				}
			}
			st := waitStats(t, s, func(st Stats) bool { return st.RxDatagrams == 7 })
			if st.Keepalives != 1 || st.DropRunt != 3 || st.RxIKE != 2 || st.RxESP != 1 || st.DropTruncated != 0 {
				t.Fatalf("counters %+v", st)
			}
			if wantBytes := uint64(1 + 2 + 24 + 5 + 32 + len(esp) + 33); st.RxBytes != wantBytes {
				t.Fatalf("RxBytes %d, want %d", st.RxBytes, wantBytes)
			}
		})
	}
}

func TestReceiveIKEPort(t *testing.T) {
	s := listen(t, ListenConfig{Addr: netip.AddrPortFrom(lo4, 0)})
	r := newRecorder()
	serve(t, s, r)
	c := client(t, lo4)
	sendTo(t, c, s.LocalAddr(), []byte{0xFF}) // not a keepalive on 500
	// Looks like ESP-in-UDP, but ESP is never encapsulated on port 500.
	espLike := append([]byte{0xC0, 0xFF, 0xEE, 0x01}, make([]byte, 40)...)
	sendTo(t, c, s.LocalAddr(), espLike)
	// Four zero octets are not a marker on port 500.
	sendTo(t, c, s.LocalAddr(), withMarker(ikeMsg(3)))
	for _, want := range [][]byte{espLike, withMarker(ikeMsg(3))} {
		p := r.next(t)
		if p.kind != KindIKE || !bytes.Equal(p.data, want) {
			t.Fatalf("got %v %x, want IKE %x", p.kind, p.data, want)
		}
	}
	st := waitStats(t, s, func(st Stats) bool { return st.RxDatagrams == 3 })
	if st.DropRunt != 1 || st.Keepalives != 0 || st.RxIKE != 2 || st.RxESP != 0 {
		t.Fatalf("counters %+v", st)
	}
}

func TestTruncated(t *testing.T) {
	for _, batch := range []int{1, 0} {
		s := listen(t, ListenConfig{Addr: netip.AddrPortFrom(lo4, 0), Encap: true, BatchSize: batch})
		r := newRecorder()
		serve(t, s, r)
		c := client(t, lo4)
		big := withMarker(make([]byte, BufferSize)) // one marker's length too long
		big[4] = 1
		fits := withMarker(make([]byte, BufferSize-NonESPMarkerLen))
		fits[4] = 2
		sendTo(t, c, s.LocalAddr(), big)
		sendTo(t, c, s.LocalAddr(), fits)
		if p := r.next(t); len(p.data) != BufferSize-NonESPMarkerLen || p.data[0] != 2 {
			t.Fatalf("batch %d: delivered %d octets starting %x", batch, len(p.data), p.data[:1])
		}
		st := waitStats(t, s, func(st Stats) bool { return st.RxDatagrams == 2 })
		if st.DropTruncated != 1 || st.RxIKE != 1 || st.RxBytes != 2*BufferSize+NonESPMarkerLen {
			t.Fatalf("batch %d: counters %+v", batch, st)
		}
	}
}

func TestKernelDrops(t *testing.T) {
	// The smallest receive buffer holds a handful of datagrams.
	srv := listen(t, ListenConfig{Addr: netip.AddrPortFrom(lo4, 0), ReadBuffer: 1})
	cli := listen(t, ListenConfig{Addr: netip.AddrPortFrom(lo4, 0)})
	const n = 200
	sendBurst(t, cli, srv.LocalAddr(), n)
	r := newRecorder()
	serve(t, srv, r)
	st := waitStats(t, srv, func(st Stats) bool { return st.RxIKE > 0 })
	if st.RxIKE >= n {
		t.Fatalf("a minimal receive buffer held all %d datagrams", n)
	}
	// Drops are reported with the next datagram that arrives, so send
	// probes until one gets through a drained buffer.
	for probes := uint64(1); ; probes++ {
		sendBurst(t, cli, srv.LocalAddr(), 1)
		deadline := time.Now().Add(100 * time.Millisecond)
		for time.Now().Before(deadline) {
			st = srv.Stats()
			if st.RxDatagrams+st.DropKernel == n+probes {
				if st.DropKernel == 0 || st.RxIKE != st.RxDatagrams {
					t.Fatalf("counters %+v", st)
				}
				return
			}
			time.Sleep(time.Millisecond)
		}
		if probes == 50 {
			t.Fatalf("received and dropped never add up to what was sent: %+v", st)
		}
	}
}

func TestSendMarker(t *testing.T) {
	esp := []byte{0, 0, 1, 0, 0, 0, 0, 9, 0xEE}
	for _, encap := range []bool{false, true} {
		s := listen(t, ListenConfig{Addr: netip.AddrPortFrom(lo4, 0), Encap: encap})
		c := client(t, lo4)
		to := c.LocalAddr().(*net.UDPAddr).AddrPort()
		if err := s.SendIKE(netip.Addr{}, to, ikeMsg(4)); err != nil {
			t.Fatal(err)
		}
		got, from := readFrom(t, c)
		want := ikeMsg(4)
		if encap {
			want = withMarker(want)
		}
		if !bytes.Equal(got, want) || from != s.LocalAddr() {
			t.Fatalf("encap %v: got %x from %v, want %x from %v", encap, got, from, want, s.LocalAddr())
		}
		errESP := s.SendESP(netip.Addr{}, to, esp)
		errKA := s.SendKeepalive(netip.Addr{}, to)
		if !encap {
			if !errors.Is(errESP, ErrNotEncap) || !errors.Is(errKA, ErrNotEncap) {
				t.Fatalf("ESP and keepalive on the IKE port: %v, %v", errESP, errKA)
			}
			st := s.Stats()
			if st.TxDatagrams != 1 || st.TxErrors != 2 || st.TxBytes != 28 {
				t.Fatalf("counters %+v", st)
			}
			continue
		}
		if errESP != nil || errKA != nil {
			t.Fatal(errESP, errKA)
		}
		if got, _ := readFrom(t, c); !bytes.Equal(got, esp) {
			t.Fatalf("ESP arrived as %x", got)
		}
		if got, _ := readFrom(t, c); !bytes.Equal(got, []byte{0xFF}) {
			t.Fatalf("keepalive arrived as %x", got)
		}
		st := s.Stats()
		if st.TxDatagrams != 3 || st.TxErrors != 0 || st.TxBytes != 32+uint64(len(esp))+1 {
			t.Fatalf("counters %+v", st)
		}
	}
}

// TestReplySource is the VIP case: one wildcard socket, requests to two local
// addresses, and each reply must come from the address its request went to.
func TestReplySource(t *testing.T) {
	cases := []struct {
		bind  netip.Addr
		dests []netip.Addr
	}{
		{any4, []netip.Addr{lo4b, lo4, lo4b}},
		{any6, []netip.Addr{lo6}},
	}
	for _, tc := range cases {
		t.Run(tc.bind.String(), func(t *testing.T) {
			if tc.bind.Is6() {
				ipv6Loopback(t)
			}
			for _, encap := range []bool{false, true} {
				s := listen(t, ListenConfig{Addr: netip.AddrPortFrom(tc.bind, 0), Encap: encap})
				r := newRecorder()
				r.echo = true
				serve(t, s, r)
				for i, dst := range tc.dests {
					c := client(t, dst)
					to := netip.AddrPortFrom(dst, s.LocalAddr().Port())
					msg := ikeMsg(byte(i))
					if encap {
						msg = withMarker(msg)
					}
					sendTo(t, c, to, msg)
					if p := r.next(t); p.local != dst {
						t.Fatalf("Packet.Local = %v, want %v", p.local, dst)
					}
					got, from := readFrom(t, c)
					if from != to || !bytes.Equal(got, msg) {
						t.Fatalf("reply %x from %v, want %x from %v", got, from, msg, to)
					}
				}
				select {
				case err := <-r.errs:
					t.Fatal(err)
				default:
				}
			}
		})
	}
}

// TestReplySourceNeedsPktinfo shows what TestReplySource guards against:
// without a source address the kernel answers a request to 127.0.0.2 from
// 127.0.0.1, and a NAT or the peer would discard it.
func TestReplySourceNeedsPktinfo(t *testing.T) {
	s := listen(t, ListenConfig{Addr: netip.AddrPortFrom(any4, 0)})
	c := client(t, lo4b)
	if err := s.SendIKE(netip.Addr{}, c.LocalAddr().(*net.UDPAddr).AddrPort(), ikeMsg(0)); err != nil {
		t.Fatal(err)
	}
	if _, from := readFrom(t, c); from.Addr() == lo4b {
		t.Fatalf("the kernel chose %v itself; TestReplySource proves nothing here", from)
	}
}

func TestSetLocalAddrs(t *testing.T) {
	s := listen(t, ListenConfig{Addr: netip.AddrPortFrom(any4, 0), Encap: true})
	r := newRecorder()
	serve(t, s, r)
	s.SetLocalAddrs([]netip.Addr{netip.AddrFrom16(lo4b.As16())}) // mapped form is accepted
	port := s.LocalAddr().Port()
	c := client(t, lo4)
	sendTo(t, c, netip.AddrPortFrom(lo4, port), withMarker(ikeMsg(1)))
	sendTo(t, c, netip.AddrPortFrom(lo4b, port), withMarker(ikeMsg(2)))
	if p := r.next(t); p.local != lo4b || !bytes.Equal(p.data, ikeMsg(2)) {
		t.Fatalf("delivered %x to %v", p.data, p.local)
	}
	waitStats(t, s, func(st Stats) bool { return st.DropNotLocal == 1 && st.RxIKE == 1 })

	// The cluster takes the VIP away and gives 127.0.0.1 instead.
	s.SetLocalAddrs([]netip.Addr{lo4})
	sendTo(t, c, netip.AddrPortFrom(lo4b, port), withMarker(ikeMsg(3)))
	sendTo(t, c, netip.AddrPortFrom(lo4, port), withMarker(ikeMsg(4)))
	if p := r.next(t); p.local != lo4 || !bytes.Equal(p.data, ikeMsg(4)) {
		t.Fatalf("delivered %x to %v", p.data, p.local)
	}
	s.SetLocalAddrs(nil)
	sendTo(t, c, netip.AddrPortFrom(lo4b, port), withMarker(ikeMsg(5)))
	if p := r.next(t); p.local != lo4b {
		t.Fatalf("delivered to %v", p.local)
	}
	// The receive loop counts a datagram's kind after the handler returns,
	// so wait for the kinds too, not only for the datagrams.
	st := waitStats(t, s, func(st Stats) bool { return st.RxDatagrams == 5 && st.RxIKE+st.DropNotLocal == 5 })
	if st.DropNotLocal != 2 || st.RxIKE != 3 {
		t.Fatalf("counters %+v", st)
	}
}

// TestBindSpecificAddress covers the alternative to the wildcard socket: a
// socket on one address, beside a wildcard socket on the same port, and a
// VIP bound before it is configured.
func TestBindSpecificAddress(t *testing.T) {
	wild := listen(t, ListenConfig{Addr: netip.AddrPortFrom(any4, 0), ReuseAddr: true})
	port := wild.LocalAddr().Port()
	vip := netip.MustParseAddr("127.0.0.5")
	one := listen(t, ListenConfig{Addr: netip.AddrPortFrom(vip, port), ReuseAddr: true})
	if one.LocalAddr() != netip.AddrPortFrom(vip, port) {
		t.Fatalf("LocalAddr %v", one.LocalAddr())
	}
	rw, ro := newRecorder(), newRecorder()
	serve(t, wild, rw)
	serve(t, one, ro)
	c := client(t, lo4)
	sendTo(t, c, netip.AddrPortFrom(vip, port), ikeMsg(1))
	sendTo(t, c, netip.AddrPortFrom(lo4, port), ikeMsg(2))
	if p := ro.next(t); p.local != vip || !bytes.Equal(p.data, ikeMsg(1)) {
		t.Fatalf("address socket got %x for %v", p.data, p.local)
	}
	if p := rw.next(t); p.local != lo4 || !bytes.Equal(p.data, ikeMsg(2)) {
		t.Fatalf("wildcard socket got %x for %v", p.data, p.local)
	}

	// 192.0.2.1 (RFC 5737 TEST-NET-1) is not configured here.
	absent := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), 0)
	if s, err := Listen(ListenConfig{Addr: absent}); err == nil {
		s.Close()
		t.Fatal("bound a non-local address without FreeBind")
	}
	listen(t, ListenConfig{Addr: absent, FreeBind: true})
}

func TestSendFromRemovedAddress(t *testing.T) {
	s := listen(t, ListenConfig{Addr: netip.AddrPortFrom(any4, 0), Encap: true})
	c := client(t, lo4)
	to := c.LocalAddr().(*net.UDPAddr).AddrPort()
	gone := netip.MustParseAddr("192.0.2.1") // a VIP that has moved away
	ds := []Datagram{
		{Kind: KindESP, Local: lo4, Remote: to, Data: []byte{0, 0, 0, 1, 0, 0, 0, 1}},
		{Kind: KindESP, Local: gone, Remote: to, Data: []byte{0, 0, 0, 1, 0, 0, 0, 2}},
		{Kind: KindESP, Local: lo4, Remote: to, Data: []byte{0, 0, 0, 1, 0, 0, 0, 4}},
	}
	n, err := s.Send(ds)
	var errno syscall.Errno
	if n != 2 || !errors.As(err, &errno) {
		t.Fatalf("Send = %d, %v; want 2 and the kernel's error", n, err)
	}
	for _, seq := range []byte{1, 4} {
		if got, from := readFrom(t, c); got[7] != seq || from.Addr() != lo4 {
			t.Fatalf("got %x from %v, want sequence %d", got, from, seq)
		}
	}
	if st := s.Stats(); st.TxDatagrams != 2 || st.TxErrors != 1 {
		t.Fatalf("counters %+v", st)
	}
	// Address family mismatches are refused before the kernel sees them.
	if err := s.SendIKE(lo6, to, ikeMsg(0)); !errors.Is(err, ErrAddressFamily) {
		t.Fatalf("IPv6 source on an IPv4 socket: %v", err)
	}
	if err := s.SendIKE(lo4, netip.AddrPortFrom(lo6, 1), ikeMsg(0)); !errors.Is(err, ErrAddressFamily) {
		t.Fatalf("IPv6 destination on an IPv4 socket: %v", err)
	}
	if _, err := s.Send([]Datagram{{Kind: KindInvalid, Remote: to}}); !errors.Is(err, ErrKind) {
		t.Fatalf("invalid kind: %v", err)
	}
}

// sendBurst queues n datagrams at to before anyone reads, so that one
// receive call finds many waiting.
func sendBurst(t *testing.T, from *Socket, to netip.AddrPort, n int) {
	t.Helper()
	ds := make([]Datagram, n)
	for i := range ds {
		ds[i] = Datagram{Kind: KindIKE, Remote: to, Data: ikeMsg(byte(i))}
	}
	if sent, err := from.Send(ds); sent != n || err != nil {
		t.Fatalf("Send = %d, %v", sent, err)
	}
}

func TestBatchReceive(t *testing.T) {
	const n = 150
	for _, batch := range []int{0, 1, 7} {
		srv := listen(t, ListenConfig{Addr: netip.AddrPortFrom(lo4, 0), BatchSize: batch, ReadBuffer: 1 << 20})
		cli := listen(t, ListenConfig{Addr: netip.AddrPortFrom(lo4, 0), BatchSize: batch})
		sendBurst(t, cli, srv.LocalAddr(), n)
		r := newRecorder()
		serve(t, srv, r)
		for i := range n {
			if p := r.next(t); !bytes.Equal(p.data, ikeMsg(byte(i))) {
				t.Fatalf("batch %d: datagram %d is %x", batch, i, p.data)
			}
		}
		rx := waitStats(t, srv, func(st Stats) bool { return st.RxIKE == n })
		tx := cli.Stats()
		size := batch
		if size == 0 {
			size = DefaultBatchSize
		}
		calls := uint64((n + size - 1) / size)
		// Everything was queued before Serve started, so each receive call
		// is full, and every send call was.
		if rx.RxBatches != calls || tx.TxBatches != calls || tx.TxDatagrams != n {
			t.Fatalf("batch %d: %d receive calls, %d send calls for %d datagrams; want %d", batch, rx.RxBatches, tx.TxBatches, n, calls)
		}
		if rx.RxBatchFallbacks != 0 || tx.TxBatchFallbacks != 0 {
			t.Fatalf("unexpected fallback: %+v %+v", rx, tx)
		}
	}
}

type batchCounter struct {
	nopHandler
	ends    int
	inBatch int
	sizes   []int
}

func (b *batchCounter) HandleIKE(p *Packet) { b.inBatch++ }
func (b *batchCounter) EndBatch() {
	b.sizes = append(b.sizes, b.inBatch)
	b.inBatch = 0
}

func TestEndBatch(t *testing.T) {
	srv := listen(t, ListenConfig{Addr: netip.AddrPortFrom(lo4, 0), Encap: true, BatchSize: 8})
	// 20 IKE messages, queued before Serve so that batches are full ...
	c := client(t, lo4)
	for i := range 20 {
		sendTo(t, c, srv.LocalAddr(), withMarker(ikeMsg(byte(i))))
	}
	// ... and a batch of keepalives only, which delivers nothing.
	for range 8 {
		sendTo(t, c, srv.LocalAddr(), []byte{0xFF})
	}
	b := &batchCounter{}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(b) }()
	waitStats(t, srv, func(st Stats) bool { return st.RxDatagrams == 28 })
	srv.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if want := []int{8, 8, 4}; !slices.Equal(b.sizes, want) || b.inBatch != 0 {
		t.Fatalf("batches delivered %v (+%d pending), want %v", b.sizes, b.inBatch, want)
	}
}

func TestBatchFallback(t *testing.T) {
	origR, origS := sysRecvmmsg, sysSendmmsg
	t.Cleanup(func() { sysRecvmmsg, sysSendmmsg = origR, origS })
	var mu sync.Mutex
	calls := 0
	// Docker's default seccomp profile answers EPERM, old kernels ENOSYS.
	sysRecvmmsg = func(uintptr, []unix.Mmsghdr) (int, syscall.Errno) { return 0, unix.ENOSYS }
	sysSendmmsg = func(uintptr, []unix.Mmsghdr) (int, syscall.Errno) {
		mu.Lock()
		calls++
		mu.Unlock()
		return 0, unix.EPERM
	}
	const n = 20
	srv := listen(t, ListenConfig{Addr: netip.AddrPortFrom(lo4, 0)})
	cli := listen(t, ListenConfig{Addr: netip.AddrPortFrom(lo4, 0)})
	sendBurst(t, cli, srv.LocalAddr(), n)
	sendBurst(t, cli, srv.LocalAddr(), n)
	r := newRecorder()
	serve(t, srv, r)
	for i := range 2 * n {
		if p := r.next(t); !bytes.Equal(p.data, ikeMsg(byte(i%n))) {
			t.Fatalf("datagram %d is %x", i, p.data)
		}
	}
	rx := waitStats(t, srv, func(st Stats) bool { return st.RxIKE == 2*n })
	tx := cli.Stats()
	if rx.RxBatchFallbacks != 1 || rx.RxBatches != 2*n {
		t.Fatalf("receive counters %+v", rx)
	}
	if tx.TxBatchFallbacks != 1 || tx.TxDatagrams != 2*n || tx.TxErrors != 0 || calls != 1 {
		t.Fatalf("send counters %+v after %d sendmmsg calls", tx, calls)
	}
}

// retainer keeps every buffer and checks later that the kept data survived
// the receive loop's reuse of its slots.
type retainer struct {
	mu   sync.Mutex
	kept [][]byte
	bufs []*Buffer
	n    chan struct{}
}

func (r *retainer) HandleIKE(p *Packet) {
	r.mu.Lock()
	if len(r.kept)%2 == 0 {
		r.bufs = append(r.bufs, p.Retain())
		r.kept = append(r.kept, p.Data)
	} else {
		r.kept = append(r.kept, bytes.Clone(p.Data))
	}
	if p.Retain() != nil && len(r.kept)%2 == 1 {
		panic("Retain returned the buffer twice")
	}
	r.mu.Unlock()
	r.n <- struct{}{}
}

func (r *retainer) HandleESP(*Packet) {}

func TestRetain(t *testing.T) {
	const n = 40
	srv := listen(t, ListenConfig{Addr: netip.AddrPortFrom(lo4, 0), BatchSize: 4})
	cli := listen(t, ListenConfig{Addr: netip.AddrPortFrom(lo4, 0)})
	r := &retainer{n: make(chan struct{}, n)}
	serve(t, srv, r)
	sendBurst(t, cli, srv.LocalAddr(), n)
	for range n {
		select {
		case <-r.n:
		case <-time.After(5 * time.Second):
			t.Fatal("timeout")
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, k := range r.kept {
		if !bytes.Equal(k, ikeMsg(byte(i))) {
			t.Fatalf("kept datagram %d is now %x", i, k)
		}
	}
	for _, b := range r.bufs {
		b.Release()
	}
}

func TestServeOnce(t *testing.T) {
	s := listen(t, ListenConfig{Addr: netip.AddrPortFrom(lo4, 0)})
	serve(t, s, newRecorder())
	deadline := time.Now().Add(5 * time.Second)
	for !s.serving.Load() {
		if time.Now().After(deadline) {
			t.Fatal("Serve did not start")
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Serve(newRecorder()); !errors.Is(err, ErrServing) {
		t.Fatalf("second Serve: %v", err)
	}
}

func TestListenAll(t *testing.T) {
	socks, err := ListenAll([]ListenConfig{
		{Addr: netip.AddrPortFrom(lo4, 0)},
		{Addr: netip.AddrPortFrom(lo4, 0), Encap: true},
	})
	if err != nil || len(socks) != 2 || socks[0].Encap() || !socks[1].Encap() {
		t.Fatalf("ListenAll: %v, %v", socks, err)
	}
	socks.Close()
	// The second config collides with the first: the first must not stay
	// open, or binding its port again would fail.
	port := netip.AddrPortFrom(lo4, socks[0].LocalAddr().Port()) // closed above
	if _, err := ListenAll([]ListenConfig{{Addr: port}, {Addr: port}}); err == nil {
		t.Fatal("ListenAll bound one port twice")
	}
	listen(t, ListenConfig{Addr: port})
}

// TestNoSilentSharing: without ReuseAddr a second daemon on the same port
// fails to start rather than receiving part of the traffic.
func TestNoSilentSharing(t *testing.T) {
	for _, bind := range []netip.Addr{any4, lo4} {
		s := listen(t, ListenConfig{Addr: netip.AddrPortFrom(bind, 0)})
		if o, err := Listen(ListenConfig{Addr: s.LocalAddr()}); err == nil {
			o.Close()
			t.Fatalf("bound %v twice", s.LocalAddr())
		}
		if o, err := Listen(ListenConfig{Addr: s.LocalAddr(), ReuseAddr: true}); err == nil {
			o.Close()
			t.Fatalf("bound %v twice when only the second socket set ReuseAddr", s.LocalAddr())
		}
	}
}

type nopHandler struct{ n int }

func (h *nopHandler) HandleIKE(*Packet) { h.n++ }
func (h *nopHandler) HandleESP(*Packet) { h.n++ }

// TestNoAllocations measures the steady-state send and receive path: a
// datagram sent with SendIKE, read by one receive call, classified, its
// addresses parsed and handed to a handler.
func TestNoAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	for _, encap := range []bool{false, true} {
		for _, batch := range []int{1, DefaultBatchSize} {
			srv := listen(t, ListenConfig{Addr: netip.AddrPortFrom(any4, 0), Encap: encap, BatchSize: batch})
			cli := listen(t, ListenConfig{Addr: netip.AddrPortFrom(lo4, 0), Encap: encap, BatchSize: batch})
			to := netip.AddrPortFrom(lo4b, srv.LocalAddr().Port())
			rx := newRxState(srv)
			defer rx.release()
			h := &nopHandler{}
			msg := ikeMsg(1)
			allocs := testing.AllocsPerRun(1000, func() {
				if err := cli.SendIKE(lo4, to, msg); err != nil {
					t.Fatal(err)
				}
				if err := rx.readBatch(h); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("encap %v batch %d: %v allocations per datagram", encap, batch, allocs)
			}
			if h.n < 1000 {
				t.Fatalf("handler saw %d datagrams", h.n)
			}
		}
	}
}

// TestConcurrentSend: senders share a socket, each with its own pooled
// scratch.
func TestConcurrentSend(t *testing.T) {
	const senders, each = 4, 50
	srv := listen(t, ListenConfig{Addr: netip.AddrPortFrom(lo4, 0), ReadBuffer: 1 << 20})
	cli := listen(t, ListenConfig{Addr: netip.AddrPortFrom(any4, 0), Encap: true})
	r := newRecorder()
	serve(t, srv, r)
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				ds := []Datagram{{Kind: KindIKE, Local: lo4, Remote: srv.LocalAddr(), Data: ikeMsg(byte(g))}, {Kind: KindKeepalive, Local: lo4, Remote: srv.LocalAddr()}}
				if n, err := cli.Send(ds); n != 2 || err != nil {
					t.Errorf("sender %d, round %d: %d, %v", g, i, n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	perSender := make(map[byte]int)
	for range senders * each {
		p := r.next(t)
		// The server is not the NAT-T port: it sees the marker.
		if !bytes.Equal(p.data[:4], []byte{0, 0, 0, 0}) || len(p.data) != 32 {
			t.Fatalf("got %x", p.data)
		}
		perSender[p.data[4+7]]++
	}
	for g := range senders {
		if perSender[byte(g)] != each {
			t.Fatalf("sender %d: %d datagrams arrived", g, perSender[byte(g)])
		}
	}
	st := waitStats(t, srv, func(st Stats) bool { return st.RxDatagrams == 2*senders*each })
	if st.DropRunt != senders*each { // keepalives are runts on the IKE port
		t.Fatalf("server counters %+v", st)
	}
	if st := cli.Stats(); st.TxDatagrams != 2*senders*each || st.TxBytes != senders*each*(32+1) {
		t.Fatalf("client counters %+v", st)
	}
}

// TestDualStackSamePort: StandardConfigs binds the IPv4 and IPv6 wildcards
// on one port, which works only because IPv6 sockets are IPv6-only; and an
// IPv4 peer must reach the IPv4 socket, not a v4-mapped IPv6 one.
func TestDualStackSamePort(t *testing.T) {
	ipv6Loopback(t)
	s4 := listen(t, ListenConfig{Addr: netip.AddrPortFrom(any4, 0), Encap: true})
	s6 := listen(t, ListenConfig{Addr: netip.AddrPortFrom(any6, s4.LocalAddr().Port()), Encap: true})
	r4, r6 := newRecorder(), newRecorder()
	serve(t, s4, r4)
	serve(t, s6, r6)
	port := s4.LocalAddr().Port()
	sendTo(t, client(t, lo4), netip.AddrPortFrom(lo4, port), withMarker(ikeMsg(4)))
	sendTo(t, client(t, lo6), netip.AddrPortFrom(lo6, port), withMarker(ikeMsg(6)))
	if p := r4.next(t); p.local != lo4 || !p.remote.Addr().Is4() || p.data[7] != 4 {
		t.Fatalf("IPv4 socket got %+v", p)
	}
	if p := r6.next(t); p.local != lo6 || !p.remote.Addr().Is6() || p.data[7] != 6 {
		t.Fatalf("IPv6 socket got %+v", p)
	}
}

func TestStandardConfigs(t *testing.T) {
	seen := map[netip.AddrPort]bool{}
	for _, c := range StandardConfigs() {
		if !c.Addr.Addr().IsUnspecified() || c.Encap != (c.Addr.Port() == 4500) || (c.Addr.Port() != 500 && c.Addr.Port() != 4500) {
			t.Fatalf("config %+v", c)
		}
		seen[c.Addr] = true
	}
	if len(seen) != 4 {
		t.Fatalf("configs cover %v", seen)
	}
}

// hoarder retains every packet and reports each call, before and after
// Retain.
type hoarder struct {
	nopHandler
	calls chan int
	kept  chan *Buffer
}

func (h *hoarder) HandleIKE(p *Packet) {
	tag := int(p.Data[7])
	h.calls <- tag
	h.kept <- p.Retain()
}

func TestRetainLimit(t *testing.T) {
	const limit, n = 3, 10
	s := listen(t, ListenConfig{Addr: netip.AddrPortFrom(lo4, 0), MaxRetained: limit})
	cli := listen(t, ListenConfig{Addr: netip.AddrPortFrom(lo4, 0)})
	h := &hoarder{calls: make(chan int, n), kept: make(chan *Buffer, n)}
	// Queued before Serve, so that one receive call reads them all.
	sendBurst(t, cli, s.LocalAddr(), n)
	done := make(chan error, 1)
	go func() { done <- s.Serve(h) }()

	next := func() int {
		t.Helper()
		select {
		case tag := <-h.calls:
			return tag
		case <-time.After(5 * time.Second):
			t.Fatal("handler not called")
			return 0
		}
	}
	quiet := func() {
		t.Helper()
		select {
		case tag := <-h.calls:
			t.Fatalf("handler called for %d while Retain should block", tag)
		case <-time.After(50 * time.Millisecond):
		}
	}
	// limit packets are kept; the next handler call blocks in Retain and
	// with it the receive loop.
	for i := range limit + 1 {
		if tag := next(); tag != i {
			t.Fatalf("call %d for packet %d", i, tag)
		}
	}
	quiet()
	waitStats(t, s, func(st Stats) bool { return st.RetainWaits == 1 })
	// One Release lets exactly one more packet in.
	(<-h.kept).Release()
	if tag := next(); tag != limit+1 {
		t.Fatalf("after a release: packet %d", tag)
	}
	quiet()
	// Closing the socket unblocks a Retain that is waiting.
	s.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve stuck in Retain after Close")
	}
	close(h.kept)
	kept := 0
	for b := range h.kept {
		if b == nil {
			t.Fatal("Retain returned nil")
		}
		b.Release()
		kept++
	}
	// What the loop had already read is still delivered, unbounded now.
	if kept != n-1 {
		t.Fatalf("%d buffers kept, want %d", kept, n-1)
	}
}

func TestBufferSizes(t *testing.T) {
	cur, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Skip(err)
	}
	var rmemMax int
	fmt.Sscan(string(cur), &rmemMax)
	want := 2 * rmemMax // past the cap
	s := listen(t, ListenConfig{Addr: netip.AddrPortFrom(lo4, 0), ReadBuffer: want, WriteBuffer: 1 << 20})
	var got int
	s.rc.Control(func(fd uintptr) { got, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) })
	if err != nil {
		t.Fatal(err)
	}
	// The kernel reports twice the size asked for (socket(7)).
	if os.Geteuid() == 0 && got < want {
		t.Fatalf("SO_RCVBUF %d, asked for %d past rmem_max %d", got, want, rmemMax)
	}
	if got < min(want, rmemMax) {
		t.Fatalf("SO_RCVBUF %d, want at least %d", got, min(want, rmemMax))
	}
}

func TestSocketsLookup(t *testing.T) {
	ipv6Loopback(t)
	vip := netip.MustParseAddr("127.0.0.7")
	socks, err := ListenAll([]ListenConfig{
		{Addr: netip.AddrPortFrom(any4, 0)},
		{Addr: netip.AddrPortFrom(any4, 0), Encap: true},
		{Addr: netip.AddrPortFrom(vip, 0), Encap: true},
		{Addr: netip.AddrPortFrom(any6, 0), Encap: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { socks.Close() })
	cases := []struct {
		local netip.Addr
		encap bool
		want  *Socket
	}{
		{lo4, false, socks[0]},
		{lo4, true, socks[1]},
		{vip, true, socks[2]},
		{netip.AddrFrom16(vip.As16()), true, socks[2]}, // v4-mapped
		{vip, false, socks[0]},
		{lo6, true, socks[3]},
		{lo6, false, nil},
	}
	for _, c := range cases {
		if got := socks.Lookup(c.local, c.encap); got != c.want {
			t.Errorf("Lookup(%v, %v) = %v, want %v", c.local, c.encap, got, c.want)
		}
	}
}
