package ike

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"log/slog"
	"net/netip"
	"os"
	"strings"
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
	t       testing.TB
	a, b    *Engine
	aAddr   netip.AddrPort
	bAddr   netip.AddrPort
	mu      sync.Mutex
	drop    func(from string, msg []byte) bool
	sent    map[string][][]byte
	cookies int // the responder's cookie threshold
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

func newPair(t testing.TB, client, server *Conn) *pair {
	return newPairCookies(t, client, server, -1)
}

func newPairCookies(t testing.TB, client, server *Conn, cookies int) *pair {
	p := &pair{t: t, aAddr: netip.MustParseAddrPort("192.0.2.1:500"), bAddr: netip.MustParseAddrPort("192.0.2.2:500"),
		sent: map[string][][]byte{}, cookies: cookies}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	mk := func(name string, conns []*Conn, other **Engine, self netip.AddrPort) *Engine {
		return New(Config{Conns: conns, Logger: log.With("engine", name), RetransmitTimeout: 200 * time.Millisecond,
			CookieThreshold: p.cookies,
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

// TestCookie: a responder that demands cookies answers the first
// IKE_SA_INIT with one; the initiator repeats with the cookie first and the
// SA establishes (RFC 7296 §2.6).
func TestCookie(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	p := newPairCookies(t, client, server, 0)
	p.establish()
	if n := p.b.Stats().CookiesSent.Load(); n != 1 {
		t.Fatalf("%d cookies sent", n)
	}
	// The retried request carries N(COOKIE) as its first payload.
	var inits int
	for _, m := range p.sent["a"] {
		var msg wire.Message
		if msg.Parse(m) == nil && msg.Header.Exchange == wire.IKE_SA_INIT {
			inits++
			if inits == 2 {
				n, err := wire.ParseNotify(msg.Payloads[0].Body)
				if msg.Payloads[0].Type != wire.PayloadNotify || err != nil || n.Type != wire.COOKIE {
					t.Fatalf("second IKE_SA_INIT does not start with N(COOKIE)")
				}
			}
		}
	}
	if inits != 2 {
		t.Fatalf("%d IKE_SA_INIT requests", inits)
	}
}

// TestInvalidKE: the initiator's KE is for a group the responder does not
// accept; it answers INVALID_KE_PAYLOAD with the group it wants, and the
// initiator retries with that group (RFC 7296 §1.2).
func TestInvalidKE(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	client.IKEProposals[0].Transforms = append(client.IKEProposals[0].Transforms,
		wire.Transform{Type: wire.TransformDH, ID: wire.DH_ECP_256})
	server.IKEProposals = []wire.Proposal{{Num: 1, Protocol: wire.ProtoIKE, Transforms: []wire.Transform{
		{Type: wire.TransformENCR, ID: wire.ENCR_AES_GCM_16, KeyLen: 256},
		{Type: wire.TransformPRF, ID: wire.PRF_HMAC_SHA2_256},
		{Type: wire.TransformDH, ID: wire.DH_ECP_256},
	}}}
	p := newPair(t, client, server)
	info := p.establish()
	if !strings.Contains(info.Suite, "dh=19") {
		t.Fatalf("suite %s", info.Suite)
	}
	if n := p.b.Stats().Exchanges[0][1][1].Load(); n != 1 {
		t.Fatalf("responder refused %d IKE_SA_INIT requests, want 1", n)
	}
}

// TestMalformedProtectedRequest: an authentic request with an unknown
// critical payload is answered with UNSUPPORTED_CRITICAL_PAYLOAD naming the
// type, and the SA lives on.
func TestMalformedProtectedRequest(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	p := newPair(t, client, server)
	p.establish()
	a := onlySA(t, p.a)
	a.mu.Lock()
	p.a.enqueue(a, &rawExchange{payload: 200, critical: true})
	a.mu.Unlock()
	waitFor(t, "the error response", func() bool { a.mu.Lock(); defer a.mu.Unlock(); return a.out == nil && a.nextSend == 3 })
	a.mu.Lock()
	got := a.stats.Retransmits
	a.mu.Unlock()
	if got != 0 {
		t.Fatalf("request retransmitted %d times", got)
	}
	if n := p.b.Stats().Malformed.Load(); n != 1 {
		t.Fatalf("responder counted %d malformed", n)
	}
	// Still alive: DPD works.
	a.mu.Lock()
	p.a.enqueue(a, &dpdExchange{})
	a.mu.Unlock()
	waitFor(t, "DPD", func() bool { a.mu.Lock(); defer a.mu.Unlock(); return a.out == nil && a.nextSend == 4 })
	if lastNotify != wire.UNSUPPORTED_CRITICAL_PAYLOAD || lastNotifyData != 200 {
		t.Fatalf("response carried %v/%d", lastNotify, lastNotifyData)
	}
}

var (
	lastNotify     wire.NotifyType
	lastNotifyData byte
)

// rawExchange sends an INFORMATIONAL request with one payload of an
// arbitrary type and records the first notify of the response.
type rawExchange struct {
	payload  wire.PayloadType
	critical bool
}

func (*rawExchange) kind() wire.ExchangeType { return wire.INFORMATIONAL }
func (x *rawExchange) build(e *Engine, sa *SA, w *wire.Builder) error {
	w.End(append(w.Start(x.payload, x.critical), 1, 2, 3))
	return nil
}
func (x *rawExchange) process(e *Engine, sa *SA, in *inbound) error {
	for _, p := range in.payloads {
		if n, err := wire.ParseNotify(p.Body); p.Type == wire.PayloadNotify && err == nil {
			lastNotify = n.Type
			if len(n.Data) > 0 {
				lastNotifyData = n.Data[0]
			}
		}
	}
	return nil
}

func TestIDStringDN(t *testing.T) {
	der, err := asn1.Marshal(pkix.Name{CommonName: "gw.example", Organization: []string{"hike"}}.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	if got := idString(wire.ID{Type: wire.ID_DER_ASN1_DN, Data: der}); got != "O=hike, CN=gw.example" {
		t.Fatalf("DN shown as %q", got)
	}
	if got := idString(wire.ID{Type: wire.ID_DER_ASN1_DN, Data: []byte{0xff}}); got != "DN:ff" {
		t.Fatalf("undecodable DN shown as %q", got)
	}
}
