package ike

import (
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/wire"
)

// pair is two engines wired back to back in one process: what one sends,
// the other receives, unless the test intercepts it. The real-socket and
// strongSwan tests live in test/interop; this one checks the state
// machines' logic quickly and deterministically.
type pair struct {
	t     *testing.T
	a, b  *Engine
	aAddr netip.AddrPort
	bAddr netip.AddrPort
	mu    sync.Mutex
	drop  func(from string, msg []byte) bool
	sent  map[string][][]byte
}

func testConns(psk string) (client, server *Conn) {
	ike := []wire.Proposal{{Num: 1, Protocol: wire.ProtoIKE, Transforms: []wire.Transform{
		{Type: wire.TransformENCR, ID: wire.ENCR_AES_GCM_16, KeyLen: 256},
		{Type: wire.TransformPRF, ID: wire.PRF_HMAC_SHA2_256},
		{Type: wire.TransformDH, ID: wire.DH_CURVE25519},
	}}}
	esp := []wire.Proposal{{Num: 1, Protocol: wire.ProtoESP, Transforms: []wire.Transform{
		{Type: wire.TransformENCR, ID: wire.ENCR_AES_GCM_16, KeyLen: 256},
		{Type: wire.TransformESN, ID: wire.ESN_NO},
	}}}
	child := func() *ChildConfig {
		return &ChildConfig{Name: "net", LocalTS: []TrafficSelector{PrefixTS(netip.MustParsePrefix("0.0.0.0/0"))},
			RemoteTS: []TrafficSelector{PrefixTS(netip.MustParsePrefix("0.0.0.0/0"))}, ESPProposals: esp}
	}
	client = &Conn{Name: "client", RemoteAddrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.2/32")},
		LocalID:   wire.ID{Type: wire.ID_FQDN, Data: []byte("client.example")},
		RemoteID:  IDPattern{Type: wire.ID_FQDN, Data: []byte("gw.example")},
		LocalAuth: Auth{Method: AuthPSK, PSK: []byte(psk)}, RemoteAuth: Auth{Method: AuthPSK, PSK: []byte(psk)},
		IKEProposals: ike, Children: []*ChildConfig{child()}, MIDSync: true, ReplaySync: true, Fragmentation: true}
	server = &Conn{Name: "gw",
		LocalID:   wire.ID{Type: wire.ID_FQDN, Data: []byte("gw.example")},
		RemoteID:  IDPattern{Type: wire.ID_FQDN, Data: []byte("*.example")},
		LocalAuth: Auth{Method: AuthPSK, PSK: []byte(psk)}, RemoteAuth: Auth{Method: AuthPSK, PSK: []byte(psk)},
		IKEProposals: ike, Children: []*ChildConfig{child()}, MIDSync: true, ReplaySync: true, Fragmentation: true}
	return client, server
}

func newPair(t *testing.T, client, server *Conn) *pair {
	p := &pair{t: t, aAddr: netip.MustParseAddrPort("192.0.2.1:500"), bAddr: netip.MustParseAddrPort("192.0.2.2:500"),
		sent: map[string][][]byte{}}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	mk := func(name string, conns []*Conn, other **Engine, self netip.AddrPort) *Engine {
		return New(Config{Conns: conns, Logger: log.With("engine", name), RetransmitTimeout: 200 * time.Millisecond,
			Send: func(local, remote netip.AddrPort, msg []byte) error {
				c := append([]byte(nil), msg...)
				p.mu.Lock()
				p.sent[name] = append(p.sent[name], c)
				drop := p.drop != nil && p.drop(name, c)
				p.mu.Unlock()
				if !drop {
					(*other).HandleIKE(remote, local, c)
				}
				return nil
			}})
	}
	p.a = mk("a", []*Conn{client}, &p.b, p.aAddr)
	p.b = mk("b", []*Conn{server}, &p.a, p.bAddr)
	p.a.Start()
	p.b.Start()
	t.Cleanup(func() { p.a.Close(); p.b.Close() })
	return p
}

func (p *pair) establish() SAInfo {
	p.t.Helper()
	type result struct {
		info SAInfo
		err  error
	}
	ch := make(chan result, 1)
	if err := p.a.Initiate("client", p.aAddr, func(i SAInfo, err error) { ch <- result{i, err} }); err != nil {
		p.t.Fatal(err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			p.t.Fatalf("initiation failed: %v", r.err)
		}
		return r.info
	case <-time.After(5 * time.Second):
		p.t.Fatal("initiation timed out")
	}
	return SAInfo{}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEstablishPSK(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	p := newPair(t, client, server)
	ia := p.establish()
	if ia.State != "established" || len(ia.Children) != 1 {
		t.Fatalf("initiator: %+v", ia)
	}
	var ib SAInfo
	waitFor(t, "responder SA", func() bool {
		l := p.b.List()
		return len(l) == 1 && len(l[0].Children) == 1 && func() bool { ib = l[0]; return true }()
	})
	if ib.SPIi != ia.SPIi || ib.SPIr != ia.SPIr {
		t.Fatalf("SPIs differ: %s/%s vs %s/%s", ia.SPIi, ia.SPIr, ib.SPIi, ib.SPIr)
	}
	if !ia.Extensions.MIDSync || !ib.Extensions.MIDSync || !ia.Extensions.ReplaySync || !ib.Extensions.ReplaySync {
		t.Fatalf("RFC 6311 not negotiated: %+v %+v", ia.Extensions, ib.Extensions)
	}
	if ia.Children[0].SPIIn != ib.Children[0].SPIOut || ia.Children[0].SPIOut != ib.Children[0].SPIIn {
		t.Fatalf("Child SPIs do not pair: %+v %+v", ia.Children[0], ib.Children[0])
	}
	if ia.PeerID != "gw.example" || ib.PeerID != "client.example" {
		t.Fatalf("peer IDs: %q %q", ia.PeerID, ib.PeerID)
	}
}

func TestWrongPSKFails(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	server.RemoteAuth.PSK = []byte("another pre-shared key entirely")
	p := newPair(t, client, server)
	ch := make(chan error, 1)
	p.a.Initiate("client", p.aAddr, func(_ SAInfo, err error) { ch <- err })
	select {
	case err := <-ch:
		if err == nil {
			t.Fatal("established with a wrong PSK")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no outcome")
	}
	waitFor(t, "responder cleanup", func() bool { return len(p.b.List()) == 0 })
}
