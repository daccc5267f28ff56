package userspace

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/dataplane"
)

// fakeDevice is an in-memory TUN: packets the test injects are read by the
// backend as if the kernel had routed them into the device, and packets the
// backend writes are queued for the test.
type fakeDevice struct {
	toBackend chan []byte
	written   chan []byte
	closeOnce sync.Once
	closed    chan struct{}
	discard   bool // benchmarks: drop written packets
}

func newFakeDevice() *fakeDevice {
	return &fakeDevice{toBackend: make(chan []byte, 64), written: make(chan []byte, 1024), closed: make(chan struct{})}
}

func (d *fakeDevice) Read(p []byte) (int, error) {
	select {
	case pkt := <-d.toBackend:
		return copy(p, pkt), nil
	case <-d.closed:
		return 0, os.ErrClosed
	}
}

func (d *fakeDevice) Write(p []byte) (int, error) {
	if d.discard {
		return len(p), nil
	}
	select {
	case d.written <- append([]byte(nil), p...):
		return len(p), nil
	default:
		return 0, errors.New("fake device full")
	}
}

func (d *fakeDevice) Close() error {
	d.closeOnce.Do(func() { close(d.closed) })
	return nil
}

// expectWritten waits for the next packet the backend writes to dev.
func expectWritten(t *testing.T, dev *fakeDevice) []byte {
	t.Helper()
	select {
	case p := <-dev.written:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no packet written to the device")
		return nil
	}
}

func expectNothingWritten(t *testing.T, dev *fakeDevice) {
	t.Helper()
	select {
	case p := <-dev.written:
		t.Fatalf("unexpected packet written to the device: % x", p)
	case <-time.After(50 * time.Millisecond):
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// ipv4 builds an IPv4 packet with a transport header: for TCP, UDP and
// other port protocols sport and dport lead the payload, for ICMP type and
// code (sport>>8, sport&0xff).
func ipv4(src, dst string, proto uint8, sport, dport uint16, payload []byte) []byte {
	var l4 []byte
	switch proto {
	case protoTCP:
		l4 = make([]byte, 20)
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		l4[12] = 5 << 4
	case protoUDP:
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(8+len(payload)))
	case protoICMP:
		l4 = []byte{byte(sport >> 8), byte(sport), 0, 0, 0, 1, 0, 1}
	}
	l4 = append(l4, payload...)
	p := make([]byte, 20, 20+len(l4))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(20+len(l4)))
	p[8] = 64
	p[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	return append(p, l4...)
}

// ipv6 builds an IPv6 packet carrying UDP.
func ipv6(src, dst string, sport, dport uint16, payload []byte) []byte {
	l4 := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	binary.BigEndian.PutUint16(l4[4:], uint16(8+len(payload)))
	l4 = append(l4, payload...)
	p := make([]byte, 40, 40+len(l4))
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(len(l4)))
	p[6] = protoUDP
	p[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	return append(p, l4...)
}

func randomKey(t testing.TB, n int) []byte {
	t.Helper()
	k := make([]byte, n)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

var algGCM256 = dataplane.Algorithm{Encr: dataplane.EncrAESGCM16, EncrKeyBits: 256}

// childSA is one Child SA as seen from both ends: keys, SPIs and the
// SAPair and Policies each side installs.
type childSA struct {
	a, b         dataplane.SAPair
	polA, polB   dataplane.Policies
	outerA       netip.Addr
	outerB       netip.Addr
	spiAB, spiBA uint32 // A->B carries spiAB
}

// newChildSA makes a Child SA between outer addresses 192.0.2.1 (A) and
// 192.0.2.2 (B), UDP-encapsulated on port 4500, protecting tsA<->tsB.
func newChildSA(t testing.TB, alg dataplane.Algorithm, reqID, spiAB, spiBA uint32, tsA, tsB []dataplane.TrafficSelector) *childSA {
	t.Helper()
	encr, integ, err := alg.KeyLen()
	if err != nil {
		t.Fatal(err)
	}
	oa, ob := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	keyAB, keyBA := randomKey(t, encr), randomKey(t, encr)
	var iAB, iBA []byte
	if integ > 0 {
		iAB, iBA = randomKey(t, integ), randomKey(t, integ)
	}
	ab := dataplane.SA{ID: dataplane.SAID{SPI: spiAB, Src: oa, Dst: ob}, ReqID: reqID, Alg: alg,
		EncrKey: keyAB, IntegKey: iAB, Encap: &dataplane.UDPEncap{SrcPort: 4500, DstPort: 4500}, ReplayWindow: 64}
	ba := dataplane.SA{ID: dataplane.SAID{SPI: spiBA, Src: ob, Dst: oa}, ReqID: reqID, Alg: alg,
		EncrKey: keyBA, IntegKey: iBA, Encap: &dataplane.UDPEncap{SrcPort: 4500, DstPort: 4500}, ReplayWindow: 64}
	return &childSA{
		a:      dataplane.SAPair{In: ba, Out: ab},
		b:      dataplane.SAPair{In: ab, Out: ba},
		polA:   dataplane.Policies{ReqID: reqID, Local: oa, Remote: ob, LocalTS: tsA, RemoteTS: tsB},
		polB:   dataplane.Policies{ReqID: reqID, Local: ob, Remote: oa, LocalTS: tsB, RemoteTS: tsA},
		outerA: oa, outerB: ob, spiAB: spiAB, spiBA: spiBA,
	}
}

func ts(prefix string) []dataplane.TrafficSelector {
	return []dataplane.TrafficSelector{dataplane.PrefixSelector(netip.MustParsePrefix(prefix))}
}

// pair is two backends wired back to back: what A sends over UDP reaches
// B's HandleESP and the other way round, synchronously. tap, if set, sees
// (and may swallow) every ESP packet first.
type pair struct {
	a, b       *Backend
	devA, devB *fakeDevice
	mu         sync.Mutex
	tap        func(fromA bool, pkt []byte) bool
}

func newPair(t testing.TB) *pair {
	t.Helper()
	p := &pair{devA: newFakeDevice(), devB: newFakeDevice()}
	send := func(fromA bool) func(local netip.Addr, remote netip.AddrPort, pkt []byte) error {
		return func(local netip.Addr, remote netip.AddrPort, pkt []byte) error {
			p.mu.Lock()
			tap := p.tap
			p.mu.Unlock()
			if tap != nil && !tap(fromA, pkt) {
				return nil
			}
			to := p.b
			if !fromA {
				to = p.a
			}
			to.HandleESP(remote.Addr(), netip.AddrPortFrom(local, 4500), pkt)
			return nil
		}
	}
	var err error
	p.a, err = New(Config{Device: p.devA, SendESP: send(true), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	p.b, err = New(Config{Device: p.devB, SendESP: send(false), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.a.Close()
		p.b.Close()
	})
	return p
}

func (p *pair) setTap(f func(fromA bool, pkt []byte) bool) {
	p.mu.Lock()
	p.tap = f
	p.mu.Unlock()
}

func (p *pair) install(t testing.TB, c *childSA) {
	t.Helper()
	for _, step := range []error{
		p.a.AddSAs(c.a), p.b.AddSAs(c.b), p.a.InstallPolicies(c.polA), p.b.InstallPolicies(c.polB),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
}
