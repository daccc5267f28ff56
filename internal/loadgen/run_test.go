package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/config"
	"github.com/hike-vpn/hike/internal/ike"
	"github.com/hike-vpn/hike/internal/transport"
	"github.com/hike-vpn/hike/internal/wire"
)

const testPSK = "load generator test pre-shared key"

// responder runs a hike engine as responder on a loopback socket, the way
// the daemon glues them, and returns its address.
func responder(t *testing.T, psk string, dpd time.Duration) (netip.AddrPort, *ike.Engine) {
	t.Helper()
	return responderWith(t, psk, dpd, nil)
}

// responderFiltered is a responder that drops the requests drop picks.
func responderFiltered(t *testing.T, drop func([]byte) bool) (netip.AddrPort, *ike.Engine) {
	t.Helper()
	return responderWith(t, testPSK, time.Hour, drop)
}

func responderWith(t *testing.T, psk string, dpd time.Duration, drop func([]byte) bool) (netip.AddrPort, *ike.Engine) {
	t.Helper()
	sock, err := transport.Listen(transport.ListenConfig{Addr: netip.MustParseAddrPort("127.0.0.1:0"), ReadBuffer: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ikeProps, err := ikeProposals(nil)
	if err != nil {
		t.Fatal(err)
	}
	espProps, err := proposals(wire.ProtoESP, config.DefaultESPProposals)
	if err != nil {
		t.Fatal(err)
	}
	conn := &ike.Conn{Name: "gw",
		LocalID:      wire.ID{Type: wire.ID_FQDN, Data: []byte("gw.load")},
		RemoteID:     ike.IDPattern{Type: wire.ID_FQDN, Data: []byte("*.load")},
		LocalAuth:    ike.Auth{Method: ike.AuthPSK, PSK: []byte(psk)},
		RemoteAuth:   ike.Auth{Method: ike.AuthPSK, PSK: []byte(psk)},
		IKEProposals: ikeProps, DPDDelay: dpd, MIDSync: true, ReplaySync: true,
		Children: []*ike.ChildConfig{{Name: "net", LocalTS: []ike.TrafficSelector{ike.PrefixTS(netip.MustParsePrefix("10.0.0.0/8"))},
			RemoteDynamic: true, ESPProposals: espProps}},
		Pool: ike.NewPool("load", netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("100.64.3.255")),
	}
	eng := ike.New(ike.Config{Conns: []*ike.Conn{conn}, CookieThreshold: -1,
		Send: func(local, remote netip.AddrPort, msg []byte) error { return sock.SendIKE(local.Addr(), remote, msg) }})
	eng.Start()
	done := make(chan struct{})
	go func() { defer close(done); sock.Serve(respHandler{eng, sock.LocalAddr().Port(), drop}) }()
	t.Cleanup(func() { sock.Close(); <-done; eng.Close() })
	return sock.LocalAddr(), eng
}

type respHandler struct {
	eng  *ike.Engine
	port uint16
	drop func([]byte) bool
}

func (h respHandler) HandleIKE(p *transport.Packet) {
	if h.drop != nil && h.drop(p.Data) {
		return
	}
	h.eng.HandleIKE(netip.AddrPortFrom(p.Local, h.port), p.Remote, p.Data)
}
func (respHandler) HandleESP(*transport.Packet) {}

// TestRunLoopback: 300 clients over 50 loopback addresses (all of
// 127.0.0.0/8 is local) against an in-process hike responder, with Child
// SAs and DPD every 300 ms: all establish, each from its own identity,
// DPD flows, nothing fails.
func TestRunLoopback(t *testing.T) {
	target, resp := responder(t, testPSK, time.Hour)
	const clients = 300
	s, err := Run(context.Background(), Options{
		Target: target, Clients: clients, Rate: 600, DPD: 300 * time.Millisecond, PSK: []byte(testPSK),
		IDFormat: "client%d.load", Sources: []netip.Prefix{netip.MustParsePrefix("127.77.0.0/26")},
		Child: true, RFC6311: true, Duration: 3 * time.Second, WatchPIDs: []int{0x7fffffff},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", s)
	if s.Established != clients || s.Failed != 0 || s.Pending != 0 || s.UpAtEnd != clients {
		t.Fatalf("established %d failed %d pending %d up %d, want all %d up: %v", s.Established, s.Failed, s.Pending, s.UpAtEnd, clients, s.Failures)
	}
	if s.SourceAddrs != 62 {
		t.Fatalf("%d source addresses from a /26, want 62", s.SourceAddrs)
	}
	if got := resp.Stats().Established.Load(); got != clients {
		t.Fatalf("responder has %d IKE SAs, want %d (distinct identities must not replace each other)", got, clients)
	}
	// DPD flows after setup, one round trip recorded per exchange. Rates
	// are not asserted from below: this test shares a 2-core machine, and
	// a stalled process delays but does not break anything.
	if s.DPD.Completed == 0 || s.DPD.Timeouts != 0 || s.DPD.Failed != 0 || s.DPD.RTT.Count != s.DPD.Completed || s.DPD.RTT.P99 <= 0 {
		t.Fatalf("DPD %+v", s.DPD)
	}
	if s.DPD.AfterSetup == 0 || s.DPD.AfterSetup > s.DPD.Completed || s.DPD.PerSecond <= 0 {
		t.Fatalf("DPD %+v: want some after setup, and no more than all", s.DPD)
	}
	// The steady window is whole DPD delays from one delay after setup,
	// when there is room for one.
	if steady := s.Elapsed - s.SetupElapsed - 0.3; steady >= 0.7 {
		periods := s.DPD.Window / 0.3
		if s.DPD.Window >= steady || math.Abs(periods-math.Round(periods)) > 0.25 {
			t.Fatalf("DPD window %vs, setup ended at %vs of %vs: want whole DPD delays of 0.3 s after the first", s.DPD.Window, s.SetupElapsed, s.Elapsed)
		}
	}
	// The ramp bounds the setup rate from above whatever the machine.
	if s.SetupRate <= 0 || s.SetupRate > 650 {
		t.Fatalf("setup rate %v at a 600/s ramp", s.SetupRate)
	}
	if s.SetupLatency.Count != clients || s.SetupLatency.P50 <= 0 || s.SetupLatency.P99 < s.SetupLatency.P50 {
		t.Fatalf("setup latency %+v", s.SetupLatency)
	}
	if len(s.CPU) != 2 || s.CPU[0].Seconds <= 0 || s.CPU[1].Err == "" {
		t.Fatalf("CPU %+v: want this process measured and the missing one reported", s.CPU)
	}
	if c := s.CPU[0]; c.SetupSeconds <= 0 || c.SteadySeconds <= 0 || math.Abs(c.SetupSeconds+c.SteadySeconds-c.Seconds) > 0.011 {
		t.Fatalf("CPU %+v: setup and steady parts must be measured and add up", c)
	}
}

// TestRunFailuresByReason: a wrong PSK fails every client, by reason, and
// the run ends by itself once all have their outcome.
func TestRunFailuresByReason(t *testing.T) {
	target, _ := responder(t, testPSK, time.Hour)
	start := time.Now()
	s, err := Run(context.Background(), Options{
		Target: target, Clients: 20, Rate: 1000, PSK: []byte("not the responder's key"),
		IDFormat: "c%d.load", Sources: []netip.Prefix{netip.MustParsePrefix("127.78.0.1/32")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Established != 0 || s.Failed != 20 || len(s.Failures) == 0 {
		t.Fatalf("summary %+v", s)
	}
	var n int64
	for _, v := range s.Failures {
		n += v
	}
	if n != 20 {
		t.Fatalf("failures by reason %v add up to %d", s.Failures, n)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("run did not end when every client had failed")
	}
}

// TestRunStopsOnContext: cancelling ends the run with clients pending;
// meanwhile the progress line is rewritten in place.
func TestRunStopsOnContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var progress bytes.Buffer
	// A target nobody answers: every client stays pending.
	s, err := Run(ctx, Options{Target: netip.MustParseAddrPort("127.0.0.1:9"), Clients: 1000, Rate: 100,
		PSK: []byte(testPSK), IDFormat: "c%d.load", Progress: &progress, ProgressEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if s.Initiated < 20 || s.Initiated > 50 || s.Pending != s.Initiated || s.Established != 0 {
		t.Fatalf("initiated %d pending %d established %d after 0.3 s at 100/s", s.Initiated, s.Pending, s.Established)
	}
	out := progress.String()
	if n := strings.Count(out, "\r"); n < 4 || strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("progress %q: want several \\r-led updates and one final newline", out)
	}
	if last := out[strings.LastIndex(out, "\r")+1:]; !strings.Contains(last, fmt.Sprintf("initiated %d/1000", s.Initiated)) {
		t.Fatalf("final progress line %q does not match the summary's %d initiated", last, s.Initiated)
	}
}

func TestRunRejectsMissingSource(t *testing.T) {
	_, err := Run(context.Background(), Options{Target: netip.MustParseAddrPort("127.0.0.1:500"), Clients: 1, Rate: 1,
		PSK: []byte(testPSK), Sources: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	if err == nil {
		t.Fatal("a prefix that is not local was accepted")
	}
}

// TestRunMaxInFlight: against a silent target, the bound holds the ramp
// at that many pending setups whatever the rate.
func TestRunMaxInFlight(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	s, err := Run(ctx, Options{Target: netip.MustParseAddrPort("127.0.0.1:9"), Clients: 1000, Rate: 1000, MaxInFlight: 25,
		PSK: []byte(testPSK), IDFormat: "c%d.load"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Initiated != 25 || s.Pending != 25 {
		t.Fatalf("initiated %d pending %d with at most 25 in flight", s.Initiated, s.Pending)
	}
}

// TestRunVirtualIP: with VirtualIP every client gets an address from the
// responder's pool, and its Child SA is built on it.
func TestRunVirtualIP(t *testing.T) {
	target, resp := responder(t, testPSK, time.Hour)
	const clients = 50
	s, err := Run(context.Background(), Options{Target: target, Clients: clients, Rate: 500, PSK: []byte(testPSK),
		IDFormat: "client%d.load", Sources: []netip.Prefix{netip.MustParsePrefix("127.79.0.0/24")}, Child: true, VirtualIP: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Established != clients || s.Failed != 0 {
		t.Fatalf("established %d failed %d %v", s.Established, s.Failed, s.Failures)
	}
	vips := map[string]bool{}
	for _, sa := range resp.List() {
		if sa.VirtualIP == "" || len(sa.Children) != 1 || sa.Children[0].RemoteTS[0] != sa.VirtualIP {
			t.Fatalf("responder SA %+v: want a virtual IP that is the Child SA's remote selector", sa)
		}
		vips[sa.VirtualIP] = true
	}
	if len(vips) != clients {
		t.Fatalf("%d distinct virtual IPs for %d clients", len(vips), clients)
	}
}

// TestRunChildRefused: a responder that cannot give the Child SA leaves
// the IKE SA up; the run counts the setup as failed, with the reason.
func TestRunChildRefused(t *testing.T) {
	target, _ := responder(t, testPSK, time.Hour)
	// An ESP proposal the responder lacks: NO_PROPOSAL_CHOSEN for the
	// Child SA only.
	s, err := Run(context.Background(), Options{Target: target, Clients: 5, Rate: 500, PSK: []byte(testPSK),
		IDFormat: "client%d.load", Sources: []netip.Prefix{netip.MustParsePrefix("127.80.0.0/24")}, Child: true,
		ESPProposals: []string{"aes128-sha1"}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Failed != 5 || s.Failures["IKE SA up, Child SA refused"] != 5 || s.UpAtEnd != 5 {
		t.Fatalf("failed %d %v, up %d: want 5 refused Child SAs on IKE SAs still up", s.Failed, s.Failures, s.UpAtEnd)
	}
}

// TestRunHold: with Hold and no Duration the run goes on for Hold after
// the last setup, probing at the DPD delay, and counts the probes sent in
// that time.
func TestRunHold(t *testing.T) {
	target, _ := responder(t, testPSK, time.Hour)
	const hold = 1200 * time.Millisecond
	s, err := Run(context.Background(), Options{Target: target, Clients: 20, Rate: 1000, PSK: []byte(testPSK),
		IDFormat: "client%d.load", Sources: []netip.Prefix{netip.MustParsePrefix("127.81.0.0/24")},
		DPD: 200 * time.Millisecond, Hold: hold})
	if err != nil {
		t.Fatal(err)
	}
	if s.Established != 20 || s.SetupElapsed <= 0 {
		t.Fatalf("established %d, setups ended at %vs: %v", s.Established, s.SetupElapsed, s.Failures)
	}
	// Hold is a lower bound; the upper one allows a stalled machine.
	if after := s.Elapsed - s.SetupElapsed; after < hold.Seconds()-0.01 || after > hold.Seconds()+1 {
		t.Fatalf("run ended %.3fs after the last setup, want %v", after, hold)
	}
	if s.DPD.SentAfterSetup == 0 || s.DPD.SentAfterSetup > s.DPD.Sent || s.DPD.AfterSetup == 0 {
		t.Fatalf("DPD %+v: want probes sent and answered after setup", s.DPD)
	}
}

// TestRunHoldBoundedByDuration: Duration ends a run whose clients never
// settle, Hold or not.
func TestRunHoldBoundedByDuration(t *testing.T) {
	start := time.Now()
	s, err := Run(context.Background(), Options{Target: netip.MustParseAddrPort("127.0.0.1:9"), Clients: 5, Rate: 1000,
		PSK: []byte(testPSK), IDFormat: "c%d.load", Duration: 300 * time.Millisecond, Hold: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second || s.Pending != 5 {
		t.Fatalf("run took %v with %d pending: Duration must end it", d, s.Pending)
	}
}

// TestRunDPDUnanswered: a responder that sets SAs up but ignores every
// INFORMATIONAL request: each probe after setup is retransmitted, and
// the summary counts it so, while none completes.
func TestRunDPDUnanswered(t *testing.T) {
	target, _ := responderFiltered(t, func(data []byte) bool {
		// Octet 18 of the IKE header is the exchange type (RFC 7296 §3.1).
		return len(data) > 18 && wire.ExchangeType(data[18]) == wire.INFORMATIONAL
	})
	s, err := Run(context.Background(), Options{Target: target, Clients: 10, Rate: 1000, PSK: []byte(testPSK),
		IDFormat: "client%d.load", Sources: []netip.Prefix{netip.MustParsePrefix("127.82.0.0/24")},
		DPD: 100 * time.Millisecond, RetransmitTimeout: 100 * time.Millisecond, Hold: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if s.Established != 10 {
		t.Fatalf("established %d: %v", s.Established, s.Failures)
	}
	d := s.DPD
	if d.SentAfterSetup == 0 || d.RetransmitsAfterSetup == 0 || d.Completed != 0 || d.RetransmitsAfterSetup > 5*d.Sent {
		t.Fatalf("DPD %+v: want probes sent and retransmitted, none answered", d)
	}
}
