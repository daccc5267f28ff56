package ike

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/wire"
)

// saOf returns the only SA of an engine, locked access through f.
func onlySA(t *testing.T, e *Engine) *SA {
	t.Helper()
	var sa *SA
	e.table.Range(func(s *SA) bool { sa = s; return false })
	if sa == nil {
		t.Fatal("no SA")
	}
	return sa
}

func resync(t *testing.T, e *Engine, ref string) error {
	t.Helper()
	ch := make(chan error, 1)
	if err := e.Resync(ref, ResyncOptions{Timeout: 100 * time.Millisecond}, func(err error) { ch <- err }); err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("resync did not finish")
	}
	return nil
}

// mid0Requests returns the INFORMATIONAL requests with Message ID 0 that
// engine name sent, in order.
func (p *pair) mid0(name string, response bool) [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out [][]byte
	for _, m := range p.sent[name] {
		h, err := wire.ParseHeader(m)
		if err == nil && h.Exchange == wire.INFORMATIONAL && h.MessageID == 0 && h.IsResponse() == response {
			out = append(out, m)
		}
	}
	return out
}

// TestResyncRoundTrip: the cluster role (a) synchronises with the peer role
// (b) after a's counters went stale, as after a restore from an old record.
func TestResyncRoundTrip(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	p := newPair(t, client, server)
	info := p.establish()
	a, b := onlySA(t, p.a), onlySA(t, p.b)

	// Some ordinary exchanges both ways, then make a's view stale.
	for i := 0; i < 3; i++ {
		a.mu.Lock()
		p.a.enqueue(a, &dpdExchange{})
		a.mu.Unlock()
		waitFor(t, "DPD answered", func() bool { a.mu.Lock(); defer a.mu.Unlock(); return a.out == nil && a.nextSend == uint32(3+i) })
	}
	b.mu.Lock()
	p.b.enqueue(b, &dpdExchange{})
	b.mu.Unlock()
	waitFor(t, "b's DPD answered", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.out == nil && b.nextSend == 1 })

	a.mu.Lock()
	a.nextSend, a.nextRecv = 1, 0 // a record from before those exchanges
	a.needsSync = true
	a.mu.Unlock()
	if err := resync(t, p.a, info.ID); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	aSend, aRecv := a.nextSend, a.nextRecv
	a.mu.Unlock()
	b.mu.Lock()
	bSend, bRecv := b.nextSend, b.nextRecv
	b.mu.Unlock()
	// M1 = 1 + window 1 = 2, but b already received up to 4: M2 = 5.
	if aSend != bRecv || aRecv != bSend || aSend < 5 || aRecv < 1 {
		t.Fatalf("counters disagree after sync: a send %d recv %d, b send %d recv %d", aSend, aRecv, bSend, bRecv)
	}
	if got := p.b.Stats().SyncsAnswered.Load(); got != 1 {
		t.Fatalf("b answered %d syncs", got)
	}
	// The SA works on: DPD both ways.
	a.mu.Lock()
	p.a.enqueue(a, &dpdExchange{})
	a.mu.Unlock()
	b.mu.Lock()
	p.b.enqueue(b, &dpdExchange{})
	b.mu.Unlock()
	waitFor(t, "DPD after sync", func() bool {
		a.mu.Lock()
		b.mu.Lock()
		defer a.mu.Unlock()
		defer b.mu.Unlock()
		return a.out == nil && b.out == nil && a.nextSend == aSend+1 && b.nextSend == bSend+1
	})
	// At most one sync per takeover.
	if err := p.a.Resync(info.ID, ResyncOptions{}, nil); err != ErrSyncDone {
		t.Fatalf("second sync without takeover: %v", err)
	}
}

// TestResyncSecurity: a replayed request, a response with a wrong nonce and
// a duplicate response are dropped and change nothing; a sync on an SA that
// did not negotiate RFC 6311 is refused on both sides.
func TestResyncSecurity(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	p := newPair(t, client, server)
	info := p.establish()
	a, b := onlySA(t, p.a), onlySA(t, p.b)
	a.mu.Lock()
	a.needsSync = true
	a.mu.Unlock()
	if err := resync(t, p.a, info.ID); err != nil {
		t.Fatal(err)
	}
	req := p.mid0("a", false)
	resp := p.mid0("b", true)
	if len(req) != 1 || len(resp) != 1 {
		t.Fatalf("%d requests, %d responses", len(req), len(resp))
	}
	// Ordinary traffic under the new counters, then the old request again:
	// a replay now, dropped without an answer.
	a.mu.Lock()
	p.a.enqueue(a, &dpdExchange{})
	a.mu.Unlock()
	waitFor(t, "DPD", func() bool { a.mu.Lock(); defer a.mu.Unlock(); return a.out == nil })
	snapshot := func(sa *SA) [2]uint32 { sa.mu.Lock(); defer sa.mu.Unlock(); return [2]uint32{sa.nextSend, sa.nextRecv} }
	bBefore := snapshot(b)
	dropped := p.b.Stats().SyncsDropped.Load()
	p.b.HandleIKE(p.bAddr, p.aAddr, req[0])
	waitFor(t, "replay dropped", func() bool { return p.b.Stats().SyncsDropped.Load() == dropped+1 })
	if snapshot(b) != bBefore || len(p.mid0("b", true)) != 1 {
		t.Fatal("replayed sync request changed state or was answered")
	}

	// A duplicate of the response: dropped by a.
	aBefore := snapshot(a)
	adrop := p.a.Stats().SyncsDropped.Load()
	p.a.HandleIKE(p.aAddr, p.bAddr, resp[0])
	waitFor(t, "duplicate dropped", func() bool { return p.a.Stats().SyncsDropped.Load() == adrop+1 })
	if snapshot(a) != aBefore {
		t.Fatal("duplicate response changed a's counters")
	}

	// A second takeover: the first response (old nonce) must not complete
	// the new procedure. Hold b's answers back so that only the stale one
	// arrives.
	p.mu.Lock()
	p.drop = func(from string, m []byte) bool { return from == "b" }
	p.mu.Unlock()
	a.mu.Lock()
	a.needsSync = true
	a.mu.Unlock()
	if err := p.a.Resync(info.ID, ResyncOptions{Timeout: time.Hour}, nil); err != nil {
		t.Fatal(err)
	}
	p.a.HandleIKE(p.aAddr, p.bAddr, resp[0])
	waitFor(t, "stale nonce dropped", func() bool { return p.a.Stats().SyncsDropped.Load() == adrop+2 })
	a.mu.Lock()
	active := a.resync.active
	a.mu.Unlock()
	if !active {
		t.Fatal("a response with the wrong nonce completed the sync")
	}
	if !bytes.Equal(req[0][:8], resp[0][:8]) {
		t.Fatal("sync exchanged on different SAs")
	}
}

func TestResyncNotNegotiated(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	server.MIDSync, server.ReplaySync = false, false
	p := newPair(t, client, server)
	info := p.establish()
	if info.Extensions.MIDSync {
		t.Fatal("responder asserted a capability the policy disables")
	}
	if err := p.a.Resync(info.ID, ResyncOptions{}, nil); err != ErrSyncNotNegotiated {
		t.Fatalf("got %v", err)
	}
	// A forged attempt (a's side believes it negotiated) is dropped by b.
	a := onlySA(t, p.a)
	a.mu.Lock()
	a.ext.MIDSync, a.needsSync = true, true
	a.mu.Unlock()
	if err := p.a.Resync(info.ID, ResyncOptions{Timeout: time.Hour}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to drop the sync", func() bool { return p.b.Stats().SyncsDropped.Load() == 1 })
	if n := len(p.mid0("b", true)); n != 0 {
		t.Fatalf("b answered %d sync requests", n)
	}
	if !strings.Contains(info.ID, "_i/") {
		t.Fatal(info.ID)
	}
}

// TestJumpEstimate: a restored Child SA's counters jump by the recorded
// traffic rate times the time since the record, with a safety factor and a
// floor; with no record the jump is RFC 6311's 2^30.
func TestJumpEstimate(t *testing.T) {
	e := New(Config{})
	now := time.Now()
	e.now = func() time.Time { return now }
	cases := []struct {
		name string
		rate float64
		at   time.Time
		want uint64
	}{
		{"no record", 100, time.Time{}, 1 << 30},
		{"idle", 0, now.Add(-10 * time.Second), minJump},
		{"record too old to trust", 10000, now.Add(-time.Minute), 1 << 30},
		{"slow: the floor", 10, now.Add(-10 * time.Second), minJump},
		{"busy", 10000, now.Add(-10 * time.Second), 10000 * 10 * jumpSafety},
	}
	for _, c := range cases {
		if got := e.estimate(c.rate, c.at); got != c.want {
			t.Errorf("%s: jump %d, want %d", c.name, got, c.want)
		}
	}
}

// TestResyncFirstRequest: the member that took over has never sent the
// peer a request, so the peer expects Message ID 0 next, the very ID of the
// sync request: the peer must still recognise it as a sync by its content
// (a remote-access gateway whose clients probe it, so it never probes).
func TestResyncFirstRequest(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	p := newPair(t, client, server)
	info := p.establish()
	a, b := onlySA(t, p.a), onlySA(t, p.b)
	a.mu.Lock()
	p.a.enqueue(a, &dpdExchange{})
	a.mu.Unlock()
	waitFor(t, "a's DPD answered", func() bool { a.mu.Lock(); defer a.mu.Unlock(); return a.out == nil && a.nextSend == 3 })
	a.mu.Lock()
	if a.nextRecv != 0 {
		t.Fatalf("a expects request %d, want 0 for this test", a.nextRecv)
	}
	a.mu.Unlock()
	b.mu.Lock()
	b.nextRecv = 2 // a record from before a's DPD
	b.needsSync = true
	b.mu.Unlock()
	if err := resync(t, p.b, info.ID); err != nil {
		t.Fatal(err)
	}
	if got := p.a.Stats().SyncsAnswered.Load(); got != 1 {
		t.Fatalf("a answered %d syncs, want 1", got)
	}
	// DPD both ways on the synchronised counters.
	for _, x := range []struct {
		e  *Engine
		sa *SA
	}{{p.a, a}, {p.b, b}} {
		x.sa.mu.Lock()
		want := x.sa.nextSend + 1
		x.e.enqueue(x.sa, &dpdExchange{})
		x.sa.mu.Unlock()
		waitFor(t, "DPD after sync", func() bool {
			x.sa.mu.Lock()
			defer x.sa.mu.Unlock()
			return x.sa.out == nil && x.sa.nextSend == want
		})
	}
}
