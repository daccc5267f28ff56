package userspace

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/dataplane"
	"github.com/hike-vpn/hike/internal/esp"
	"github.com/hike-vpn/hike/internal/transport"
)

func TestRoundTripAlgorithms(t *testing.T) {
	algs := map[string]dataplane.Algorithm{
		"aes-gcm-128":       {Encr: dataplane.EncrAESGCM16, EncrKeyBits: 128},
		"aes-gcm-256":       algGCM256,
		"chacha20poly1305":  {Encr: dataplane.EncrChaCha20Poly1305},
		"aes-cbc-sha256":    {Encr: dataplane.EncrAESCBC, EncrKeyBits: 128, Integ: dataplane.IntegHMACSHA2_256_128},
		"aes256-cbc-sha512": {Encr: dataplane.EncrAESCBC, EncrKeyBits: 256, Integ: dataplane.IntegHMACSHA2_512_256},
		"aes-cbc-sha1":      {Encr: dataplane.EncrAESCBC, EncrKeyBits: 128, Integ: dataplane.IntegHMACSHA1_96},
	}
	for name, alg := range algs {
		t.Run(name, func(t *testing.T) {
			p := newPair(t)
			c := newChildSA(t, alg, 7, 0x1000, 0x2000, ts("10.0.1.0/24"), ts("10.0.2.0/24"))
			p.install(t, c)

			var sent []byte
			for i := range 5 {
				pkt := ipv4("10.0.1.5", "10.0.2.9", protoUDP, 1000, 53, bytes.Repeat([]byte{byte(i)}, 100+i*37))
				sent = append(sent, pkt...)
				p.devA.toBackend <- pkt
				if got := expectWritten(t, p.devB); !bytes.Equal(got, pkt) {
					t.Fatalf("A->B packet %d: got % x, want % x", i, got, pkt)
				}
				back := ipv4("10.0.2.9", "10.0.1.5", protoTCP, 53, 1000, []byte("reply"))
				p.devB.toBackend <- back
				if got := expectWritten(t, p.devA); !bytes.Equal(got, back) {
					t.Fatalf("B->A packet %d: got % x, want % x", i, got, back)
				}
			}
			for _, chk := range []struct {
				be *Backend
				id dataplane.SAID
			}{{p.a, c.a.Out.ID}, {p.b, c.b.In.ID}} {
				cnt, err := chk.be.Counters(chk.id)
				if err != nil {
					t.Fatal(err)
				}
				if cnt.Packets != 5 || cnt.Bytes != uint64(len(sent)) {
					t.Errorf("counters of %s: %+v, want 5 packets, %d bytes", chk.id, cnt, len(sent))
				}
			}
			if seq, err := p.a.OutboundSeq(c.a.Out.ID); err != nil || seq != 5 {
				t.Errorf("OutboundSeq = %d, %v; want 5", seq, err)
			}
			// RxPackets is counted just after the device write returns.
			waitFor(t, func() bool { s := p.a.Stats(); return s.TxPackets == 5 && s.RxPackets == 5 })
		})
	}
}

func TestIPv6InnerPackets(t *testing.T) {
	p := newPair(t)
	c := newChildSA(t, algGCM256, 3, 0x11, 0x22, ts("fd00:1::/64"), ts("fd00:2::/64"))
	p.install(t, c)
	pkt := ipv6("fd00:1::1", "fd00:2::2", 5000, 6000, []byte("hello over v6"))
	p.devA.toBackend <- pkt
	if got := expectWritten(t, p.devB); !bytes.Equal(got, pkt) {
		t.Fatalf("got % x, want % x", got, pkt)
	}
}

// TestOutboundSelection checks which SA carries a packet when several
// Child SAs' selectors overlap, and that packets no policy covers are
// dropped and counted.
func TestOutboundSelection(t *testing.T) {
	p := newPair(t)
	wide := newChildSA(t, algGCM256, 1, 0x101, 0x201, ts("10.0.1.0/24"), ts("10.0.0.0/8"))
	host := newChildSA(t, algGCM256, 2, 0x102, 0x202, ts("10.0.1.0/24"), ts("10.9.9.9/32"))
	p.install(t, wide)
	p.install(t, host)

	var spis []uint32
	p.setTap(func(fromA bool, pkt []byte) bool {
		spis = append(spis, uint32(pkt[0])<<24|uint32(pkt[1])<<16|uint32(pkt[2])<<8|uint32(pkt[3]))
		return true
	})
	for _, dst := range []string{"10.9.9.9", "10.9.9.8", "10.200.0.1"} {
		p.devA.toBackend <- ipv4("10.0.1.1", dst, protoUDP, 1, 2, nil)
		expectWritten(t, p.devB)
	}
	if want := []uint32{0x102, 0x101, 0x101}; !equalU32(spis, want) {
		t.Errorf("SPIs used %x, want %x", spis, want)
	}
	p.devA.toBackend <- ipv4("10.0.1.1", "172.16.0.1", protoUDP, 1, 2, nil) // no policy
	p.devA.toBackend <- ipv4("10.0.7.1", "10.9.9.9", protoUDP, 1, 2, nil)   // source outside local TS
	expectNothingWritten(t, p.devB)
	waitFor(t, func() bool { return p.a.Stats().DropNoPolicy == 2 })

	// Removing the host policy sends its traffic through the wide one.
	if err := p.a.RemovePolicies(host.polA); err != nil {
		t.Fatal(err)
	}
	spis = nil
	p.devA.toBackend <- ipv4("10.0.1.1", "10.9.9.9", protoUDP, 1, 2, nil)
	expectWritten(t, p.devB)
	if want := []uint32{0x101}; !equalU32(spis, want) {
		t.Errorf("after removal SPIs %x, want %x", spis, want)
	}
}

func equalU32(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func waitFor(t *testing.T, cond func() bool, state ...func() string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			for _, s := range state {
				t.Log(s())
			}
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

// captureOne sends pkt from A and returns the ESP packet instead of
// delivering it.
func captureOne(t *testing.T, p *pair, pkt []byte) []byte {
	t.Helper()
	got := make(chan []byte, 1)
	p.setTap(func(fromA bool, e []byte) bool {
		got <- append([]byte(nil), e...)
		return false
	})
	defer p.setTap(nil)
	p.devA.toBackend <- pkt
	select {
	case e := <-got:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no ESP packet sent")
		return nil
	}
}

func deliver(p *pair, c *childSA, espPkt []byte) {
	p.b.HandleESP(c.outerB, netip.AddrPortFrom(c.outerA, 4500), append([]byte(nil), espPkt...))
}

func TestInboundDrops(t *testing.T) {
	p := newPair(t)
	c := newChildSA(t, algGCM256, 9, 0xaa, 0xbb, ts("10.0.1.0/24"), ts("10.0.2.0/24"))
	p.install(t, c)
	pkt := ipv4("10.0.1.1", "10.0.2.1", protoICMP, 8<<8, 0, []byte("ping"))
	e := captureOne(t, p, pkt)

	deliver(p, c, e)
	if got := expectWritten(t, p.devB); !bytes.Equal(got, pkt) {
		t.Fatal("first delivery failed")
	}
	deliver(p, c, e) // replay
	tampered := append([]byte(nil), captureOne(t, p, pkt)...)
	tampered[len(tampered)-1] ^= 1
	deliver(p, c, tampered)
	unknown := append([]byte(nil), e...)
	unknown[3] ^= 0xff
	deliver(p, c, unknown)
	deliver(p, c, e[:5])
	expectNothingWritten(t, p.devB)

	s := p.b.Stats()
	if s.DropReplay != 1 || s.DropAuth != 1 || s.DropUnknownSPI != 1 || s.DropInvalid != 1 || s.RxPackets != 1 {
		t.Errorf("stats %+v: want one replay, one auth failure, one unknown SPI, one invalid, one received", s)
	}
}

// TestPolicyMismatch: B accepts from its peer only what B's policy allows,
// even when the packet is authentic (RFC 4301 §5.2).
func TestPolicyMismatch(t *testing.T) {
	p := newPair(t)
	c := newChildSA(t, algGCM256, 4, 0x31, 0x32, ts("10.0.1.0/24"), ts("10.0.2.0/24"))
	p.a.AddSAs(c.a)
	p.b.AddSAs(c.b)
	p.a.InstallPolicies(c.polA)
	narrow := c.polB
	narrow.RemoteTS = ts("10.0.1.1/32")
	narrow.LocalTS = []dataplane.TrafficSelector{{Start: netip.MustParseAddr("10.0.2.0"),
		End: netip.MustParseAddr("10.0.2.255"), Proto: protoTCP, StartPort: 80, EndPort: 80}}
	if err := p.b.InstallPolicies(narrow); err != nil {
		t.Fatal(err)
	}
	ok := ipv4("10.0.1.1", "10.0.2.1", protoTCP, 40000, 80, []byte("GET /"))
	for _, bad := range [][]byte{
		ipv4("10.0.1.2", "10.0.2.1", protoTCP, 40000, 80, nil), // source outside
		ipv4("10.0.1.1", "10.0.2.1", protoTCP, 40000, 81, nil), // port outside
		ipv4("10.0.1.1", "10.0.2.1", protoUDP, 40000, 80, nil), // protocol outside
	} {
		p.devA.toBackend <- bad
	}
	p.devA.toBackend <- ok
	if got := expectWritten(t, p.devB); !bytes.Equal(got, ok) {
		t.Fatalf("got % x, want the allowed packet", got)
	}
	expectNothingWritten(t, p.devB)
	if s := p.b.Stats(); s.DropPolicyMismatch != 3 {
		t.Errorf("DropPolicyMismatch = %d, want 3", s.DropPolicyMismatch)
	}
}

// TestRFC6311Sync walks through a takeover: the inbound window and the
// outbound counter move to a second pair of backends holding the same
// keys, and neither a replay nor a reused sequence number gets through.
func TestRFC6311Sync(t *testing.T) {
	p := newPair(t)
	c := newChildSA(t, algGCM256, 5, 0x51, 0x52, ts("10.0.1.0/24"), ts("10.0.2.0/24"))
	p.install(t, c)
	pkt := ipv4("10.0.1.1", "10.0.2.1", protoUDP, 1, 2, []byte("x"))
	var esps [][]byte
	for range 6 {
		esps = append(esps, captureOne(t, p, pkt))
	}
	// B received 1, 2, 3 and 5; 4 and 6 are still in flight.
	for _, i := range []int{0, 1, 2, 4} {
		deliver(p, c, esps[i])
		expectWritten(t, p.devB)
	}
	r, err := p.b.ReplayState(c.b.In.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Bit i is Seq-i (dataplane.Replay): 5, 3, 2, 1 received, 4 not.
	if r.Seq != 5 || r.Window != 64 || len(r.Bitmap) != 2 || r.Bitmap[0] != 0b11101 || r.Bitmap[1] != 0 {
		t.Fatalf("ReplayState = %+v, want Seq 5, window 64, bitmap [0b11101 0]", r)
	}

	// The standby restores the state onto the same SA.
	q := newPair(t)
	q.install(t, c)
	if err := q.b.SetReplayState(c.b.In.ID, r); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{2, 4} { // already received
		q.b.HandleESP(c.outerB, netip.AddrPortFrom(c.outerA, 4500), append([]byte(nil), esps[i]...))
	}
	q.b.HandleESP(c.outerB, netip.AddrPortFrom(c.outerA, 4500), append([]byte(nil), esps[3]...)) // 4: fresh
	expectWritten(t, q.devB)
	expectNothingWritten(t, q.devB)
	if s := q.b.Stats(); s.DropReplay != 2 {
		t.Errorf("DropReplay = %d, want 2", s.DropReplay)
	}

	// RFC 6311 §5.2: the new owner advances its window by a delta and the
	// peer skips the same delta; everything below is now refused.
	if err := q.b.AdvanceReplay(c.b.In.ID, 100); err != nil {
		t.Fatal(err)
	}
	q.b.HandleESP(c.outerB, netip.AddrPortFrom(c.outerA, 4500), append([]byte(nil), esps[5]...)) // 6
	expectNothingWritten(t, q.devB)
	if err := q.a.SetOutboundSeq(c.a.Out.ID, 105); err != nil {
		t.Fatal(err)
	}
	if err := q.a.SetOutboundSeq(c.a.Out.ID, 104); !errors.Is(err, esp.ErrSeqBackwards) {
		t.Errorf("moving the counter back: %v, want ErrSeqBackwards", err)
	}
	q.devA.toBackend <- pkt // carries 106, above the advanced window
	if got := expectWritten(t, q.devB); !bytes.Equal(got, pkt) {
		t.Fatal("packet above the advanced window was not delivered")
	}
	if r, _ := q.b.ReplayState(c.b.In.ID); r.Seq != 106 {
		t.Errorf("window top %d, want 106", r.Seq)
	}
}

func TestReplayConversion(t *testing.T) {
	// dataplane.Replay numbers bits within 32-bit words, esp within 64-bit
	// words; both count down from the top.
	r := dataplane.Replay{Seq: 1000, Bitmap: []uint32{0x80000001, 0x00000003}}
	s := fromReplay(r)
	if s.Top != 1000 || len(s.Bitmap) != 1 || s.Bitmap[0] != 0x0000000380000001 {
		t.Fatalf("fromReplay = %+v", s)
	}
	back := toReplay(s)
	if back.Seq != 1000 || back.Window != 64 || back.Bitmap[0] != r.Bitmap[0] || back.Bitmap[1] != r.Bitmap[1] {
		t.Fatalf("toReplay = %+v", back)
	}
	// An odd word count leaves numbers uncovered, which must count as seen.
	if s := fromReplay(dataplane.Replay{Seq: 50, Bitmap: []uint32{1}}); s.Bitmap[0] != 0xffffffff00000001 {
		t.Fatalf("odd bitmap: %x", s.Bitmap)
	}
}

func TestLifetimeEvents(t *testing.T) {
	p := newPair(t)
	c := newChildSA(t, algGCM256, 6, 0x61, 0x62, ts("10.0.1.0/24"), ts("10.0.2.0/24"))
	c.a.Out.Lifetime = dataplane.Lifetime{SoftPackets: 2, HardPackets: 3}
	c.b.In.Lifetime = dataplane.Lifetime{SoftBytes: 50, HardBytes: 1 << 20}
	p.install(t, c)
	pkt := ipv4("10.0.1.1", "10.0.2.1", protoUDP, 1, 2, make([]byte, 20)) // 48 bytes
	for i := range 4 {
		p.devA.toBackend <- pkt
		if i < 3 {
			expectWritten(t, p.devB)
		}
	}
	expectNothingWritten(t, p.devB)
	// Both backends name the A->B SA the same way; which one fired is told
	// by the channel.
	type sideEvent struct {
		side string
		ev   dataplane.Event
	}
	want := []sideEvent{
		{"b", dataplane.Event{Kind: dataplane.EventSoftExpire, SA: c.b.In.ID, ReqID: 6}},  // 96 bytes > 50
		{"a", dataplane.Event{Kind: dataplane.EventSoftExpire, SA: c.a.Out.ID, ReqID: 6}}, // 2 packets
		{"a", dataplane.Event{Kind: dataplane.EventHardExpire, SA: c.a.Out.ID, ReqID: 6}}, // 3 packets
	}
	got := map[sideEvent]int{}
	for range want {
		select {
		case ev := <-p.a.Events():
			got[sideEvent{"a", ev}]++
		case ev := <-p.b.Events():
			got[sideEvent{"b", ev}]++
		case <-time.After(5 * time.Second):
			t.Fatalf("events so far %v, want %v", got, want)
		}
	}
	for _, w := range want {
		if got[w] != 1 {
			t.Errorf("event %+v seen %d times", w, got[w])
		}
	}
	select {
	case ev := <-p.a.Events():
		t.Errorf("extra event %+v", ev)
	case ev := <-p.b.Events():
		t.Errorf("extra event %+v", ev)
	case <-time.After(20 * time.Millisecond):
	}
	if _, err := p.a.Counters(c.a.Out.ID); !errors.Is(err, dataplane.ErrNotFound) {
		t.Errorf("hard-expired SA still installed: %v", err)
	}
	if s := p.a.Stats(); s.DropNoSA != 1 {
		t.Errorf("DropNoSA = %d, want 1 (the packet after the hard expiry)", s.DropNoSA)
	}
}

// TestRekeyUsesNewestSA: a rekey installs a second pair with the same
// ReqID; outbound traffic moves to it, and back to the old one if the new
// one is deleted first.
func TestRekeyUsesNewestSA(t *testing.T) {
	p := newPair(t)
	old := newChildSA(t, algGCM256, 8, 0x81, 0x82, ts("10.0.1.0/24"), ts("10.0.2.0/24"))
	p.install(t, old)
	fresh := newChildSA(t, algGCM256, 8, 0x91, 0x92, ts("10.0.1.0/24"), ts("10.0.2.0/24"))
	if err := p.a.AddSAs(fresh.a); err != nil {
		t.Fatal(err)
	}
	if err := p.b.AddSAs(fresh.b); err != nil {
		t.Fatal(err)
	}
	pkt := ipv4("10.0.1.1", "10.0.2.1", protoUDP, 1, 2, nil)
	if e := captureOne(t, p, pkt); e[3] != 0x91 {
		t.Errorf("after rekey SPI %x, want 0x91", e[:4])
	}
	if err := p.a.DeleteSA(fresh.a.Out.ID); err != nil {
		t.Fatal(err)
	}
	if err := p.a.DeleteSA(fresh.a.Out.ID); !errors.Is(err, dataplane.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	if e := captureOne(t, p, pkt); e[3] != 0x81 {
		t.Errorf("after deleting the new SA, SPI %x, want 0x81", e[:4])
	}
}

func TestAddSAsErrors(t *testing.T) {
	p := newPair(t)
	c := newChildSA(t, algGCM256, 1, 0x71, 0x72, ts("10.0.1.0/24"), ts("10.0.2.0/24"))
	plain := c.a
	plain.Out.Encap = nil
	if err := p.a.AddSAs(plain); err == nil {
		t.Error("SA without encapsulation accepted without raw ESP")
	}
	if err := p.a.AddSAs(c.a); err != nil {
		t.Fatal(err)
	}
	if err := p.a.AddSAs(c.a); err == nil {
		t.Error("duplicate SPI accepted")
	}
	bad := newChildSA(t, algGCM256, 1, 0x73, 0x74, ts("10.0.1.0/24"), ts("10.0.2.0/24"))
	bad.a.In.EncrKey = bad.a.In.EncrKey[:10]
	if err := p.a.AddSAs(bad.a); err == nil {
		t.Error("short key accepted")
	}
	if _, err := p.a.Counters(bad.a.Out.ID); !errors.Is(err, dataplane.ErrNotFound) {
		t.Error("failed AddSAs left the outbound SA installed")
	}
}

// TestUpdateSAMovesPeer: NAT rebinding changes the peer's port; the next
// packet goes there.
func TestUpdateSAMovesPeer(t *testing.T) {
	devA := newFakeDevice()
	got := make(chan netip.AddrPort, 1)
	a, err := New(Config{Device: devA, Logger: quietLogger(), SendESP: func(l netip.Addr, r netip.AddrPort, pkt []byte) error {
		got <- r
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	c := newChildSA(t, algGCM256, 2, 0x41, 0x42, ts("10.0.1.0/24"), ts("10.0.2.0/24"))
	if err := a.AddSAs(c.a); err != nil {
		t.Fatal(err)
	}
	a.InstallPolicies(c.polA)
	moved := c.a.Out
	moved.Encap = &dataplane.UDPEncap{SrcPort: 4500, DstPort: 31337}
	if err := a.UpdateSA(moved); err != nil {
		t.Fatal(err)
	}
	devA.toBackend <- ipv4("10.0.1.1", "10.0.2.1", protoUDP, 1, 2, nil)
	select {
	case r := <-got:
		if r != netip.AddrPortFrom(c.outerB, 31337) {
			t.Errorf("sent to %s, want %s:31337", r, c.outerB)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing sent")
	}
}

func TestCloseClosesEvents(t *testing.T) {
	b, err := New(Config{Device: newFakeDevice(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, open := <-b.Events(); open {
		t.Error("Events channel still open after Close")
	}
	b.Close() // idempotent
}

// FuzzInbound seals arbitrary inner packets with a valid SA and hands them
// to the receiver: whatever the content, the receiver must not panic, and
// it may write only well-formed IP packets inside its selectors.
func FuzzInbound(f *testing.F) {
	f.Add([]byte{}, byte(4))
	f.Add(ipv4("10.0.1.1", "10.0.2.1", protoUDP, 1, 2, []byte("ok")), byte(4))
	f.Add(ipv4("10.0.9.1", "10.0.2.1", protoUDP, 1, 2, nil), byte(4))
	f.Add(ipv6("fd00::1", "fd00::2", 1, 2, nil), byte(41))
	f.Add([]byte{0x45, 0, 0, 0x14}, byte(59))
	p := newPair(f)
	c := newChildSA(f, algGCM256, 1, 0x1234, 0x4321, ts("10.0.1.0/24"), ts("10.0.2.0/24"))
	p.install(f, c)
	p.b.mu.RLock()
	pol := p.b.policies[1]
	p.b.mu.RUnlock()
	out := p.a.outbound[1][0]
	f.Fuzz(func(t *testing.T, inner []byte, nh byte) {
		out.mu.Lock()
		e, err := out.sa.Seal(nil, inner, nh)
		out.mu.Unlock()
		if err != nil {
			t.Skip(err)
		}
		p.b.HandleESP(c.outerB, netip.AddrPortFrom(c.outerA, 4500), e)
		select {
		case got := <-p.devB.written:
			fl, n, ok := parseFlow(got)
			if !ok || n != len(got) || !pol.matchIn(&fl) {
				t.Fatalf("wrote % x", got)
			}
		default:
		}
	})
}

// TestControlPlaneUnderTraffic runs the control-plane calls the daemon
// makes (rekeys, policy changes, counter reads, RFC 6311 moves) while
// packets flow both ways; run with -race it checks the locking, and every
// packet that arrives must be intact.
func TestControlPlaneUnderTraffic(t *testing.T) {
	p := newPair(t)
	p.devB.discard = true
	base := newChildSA(t, algGCM256, 1, 0x100, 0x200, ts("10.0.1.0/24"), ts("10.0.2.0/24"))
	p.install(t, base)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		pkt := ipv4("10.0.1.1", "10.0.2.1", protoUDP, 1, 2, make([]byte, 200))
		for {
			select {
			case <-stop:
				return
			case p.devA.toBackend <- pkt:
			}
		}
	}()
	for i := range 200 {
		c := newChildSA(t, algGCM256, uint32(2+i%5), uint32(0x1000+i), uint32(0x8000+i), ts("10.0.1.0/24"), ts(fmt.Sprintf("10.1.%d.0/24", i%5)))
		p.install(t, c)
		if _, err := p.a.Counters(base.a.Out.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := p.b.ReplayState(base.b.In.ID); err != nil {
			t.Fatal(err)
		}
		if err := p.b.AdvanceReplay(base.b.In.ID, 0); err != nil {
			t.Fatal(err)
		}
		seq, _ := p.a.OutboundSeq(base.a.Out.ID)
		// Traffic may have passed seq+1 already; that refusal is correct.
		if err := p.a.SetOutboundSeq(base.a.Out.ID, seq+1); err != nil && !errors.Is(err, esp.ErrSeqBackwards) {
			t.Fatal(err)
		}
		if i%2 == 0 {
			p.a.RemovePolicies(c.polA)
		}
		p.a.DeleteSA(c.a.Out.ID)
		p.a.DeleteSA(c.a.In.ID)
		p.b.DeleteSA(c.b.Out.ID)
		p.b.DeleteSA(c.b.In.ID)
	}
	close(stop)
	<-done
	// However the goroutines were scheduled, the tunnel still works.
	before := p.b.Stats().RxPackets
	p.devA.toBackend <- ipv4("10.0.1.1", "10.0.2.1", protoUDP, 1, 2, nil)
	waitFor(t, func() bool { return p.b.Stats().RxPackets > before }, func() string {
		return fmt.Sprintf("A %+v\nB %+v", p.a.Stats(), p.b.Stats())
	})
	if s := p.b.Stats(); s.DropAuth+s.DropInvalid+s.DropPolicyMismatch != 0 {
		t.Errorf("B drops under control-plane churn: %+v", s)
	}
}

// fakeBatchDevice hands the backend bursts of packets through readBatch.
type fakeBatchDevice struct {
	*fakeDevice
	bursts chan [][]byte
}

func (d fakeBatchDevice) readBatch(bufs [][]byte, off int, sizes []int) (int, error) {
	select {
	case burst := <-d.bursts:
		n := 0
		for ; n < len(burst) && n < len(bufs); n++ {
			sizes[n] = copy(bufs[n][off:], burst[n])
		}
		return n, nil
	case <-d.closed:
		return 0, os.ErrClosed
	}
}

// TestBatchSend: a burst read from the device leaves in one batch, in
// order, and arrives intact; a datagram the batch sender refuses is
// counted as a send failure.
func TestBatchSend(t *testing.T) {
	devA := fakeBatchDevice{newFakeDevice(), make(chan [][]byte, 1)}
	devB := newFakeDevice()
	c := newChildSA(t, algGCM256, 1, 0x51, 0x52, ts("10.0.1.0/24"), ts("10.0.2.0/24"))
	var b *Backend
	batches := make(chan int, 10)
	batch := func(ds []transport.Datagram) (int, error) {
		batches <- len(ds)
		for _, d := range ds[:len(ds)-1] {
			if d.Kind != transport.KindESP || d.Local != c.outerA || d.Remote != netip.AddrPortFrom(c.outerB, 4500) {
				t.Errorf("datagram %+v", d)
			}
			b.HandleESP(d.Remote.Addr(), netip.AddrPortFrom(d.Local, 4500), d.Data)
		}
		return len(ds) - 1, errors.New("refused")
	}
	unused := func(netip.Addr, netip.AddrPort, []byte) error { t.Error("single send used"); return nil }
	var err error
	b, err = New(Config{Device: devB, SendESP: unused, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a, err := New(Config{Device: devA, SendESP: unused, SendESPBatch: batch, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, err := range []error{a.AddSAs(c.a), b.AddSAs(c.b), a.InstallPolicies(c.polA), b.InstallPolicies(c.polB)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	var pkts [][]byte
	for i := range 20 {
		pkts = append(pkts, ipv4("10.0.1.1", "10.0.2.1", protoUDP, uint16(i), 2, bytes.Repeat([]byte{byte(i)}, i)))
	}
	devA.bursts <- append(pkts, ipv4("10.0.1.1", "10.0.2.1", protoUDP, 99, 2, nil)) // the last is refused
	select {
	case n := <-batches:
		if n != 21 {
			t.Fatalf("batch of %d, want 21", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no batch sent")
	}
	for i, want := range pkts {
		if got := expectWritten(t, devB); !bytes.Equal(got, want) {
			t.Fatalf("packet %d: got % x, want % x", i, got, want)
		}
	}
	waitFor(t, func() bool { s := a.Stats(); return s.TxPackets == 20 && s.DropSendFailed == 1 })
}

func TestDirectionErrors(t *testing.T) {
	p := newPair(t)
	c := newChildSA(t, algGCM256, 1, 0x71, 0x72, ts("10.0.1.0/24"), ts("10.0.2.0/24"))
	p.install(t, c)
	if _, err := p.a.OutboundSeq(c.a.In.ID); !errors.Is(err, esp.ErrDirection) {
		t.Errorf("OutboundSeq of an inbound SA: %v", err)
	}
	if err := p.a.SetOutboundSeq(c.a.In.ID, 5); !errors.Is(err, esp.ErrDirection) {
		t.Errorf("SetOutboundSeq of an inbound SA: %v", err)
	}
	if _, err := p.a.ReplayState(c.a.Out.ID); !errors.Is(err, esp.ErrDirection) {
		t.Errorf("ReplayState of an outbound SA: %v", err)
	}
	if err := p.a.AdvanceReplay(c.a.Out.ID, 5); !errors.Is(err, esp.ErrDirection) {
		t.Errorf("AdvanceReplay of an outbound SA: %v", err)
	}
	missing := dataplane.SAID{SPI: 0xdead, Src: c.outerA, Dst: c.outerB}
	for name, err := range map[string]error{
		"Counters":    func() error { _, err := p.a.Counters(missing); return err }(),
		"ReplayState": func() error { _, err := p.a.ReplayState(missing); return err }(),
		"DeleteSA":    p.a.DeleteSA(missing),
		"UpdateSA":    p.a.UpdateSA(dataplane.SA{ID: missing}),
	} {
		if !errors.Is(err, dataplane.ErrNotFound) {
			t.Errorf("%s of a missing SA: %v, want ErrNotFound", name, err)
		}
	}
}
