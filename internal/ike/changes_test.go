package ike

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/dataplane"
	"github.com/hike-vpn/hike/internal/wire"
)

// fakeDataplane keeps installed SAs and their sequence numbers in maps.
type fakeDataplane struct {
	mu  sync.Mutex
	seq map[dataplane.SAID]uint64 // outbound: last sent; inbound: highest received
}

func newFakeDataplane() *fakeDataplane {
	return &fakeDataplane{seq: map[dataplane.SAID]uint64{}}
}

func (*fakeDataplane) Kind() dataplane.Kind { return dataplane.KindUserspace }
func (f *fakeDataplane) AddSAs(p dataplane.SAPair) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq[p.In.ID], f.seq[p.Out.ID] = 0, 0
	return nil
}
func (*fakeDataplane) UpdateSA(dataplane.SA) error { return nil }
func (f *fakeDataplane) DeleteSA(id dataplane.SAID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.seq[id]; !ok {
		return dataplane.ErrNotFound
	}
	delete(f.seq, id)
	return nil
}
func (*fakeDataplane) InstallPolicies(dataplane.Policies) error { return nil }
func (*fakeDataplane) RemovePolicies(dataplane.Policies) error  { return nil }
func (*fakeDataplane) Counters(dataplane.SAID) (dataplane.Counters, error) {
	return dataplane.Counters{}, nil
}
func (f *fakeDataplane) get(id dataplane.SAID) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.seq[id]
	if !ok {
		return 0, dataplane.ErrNotFound
	}
	return s, nil
}
func (f *fakeDataplane) set(id dataplane.SAID, s uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.seq[id]; !ok {
		return dataplane.ErrNotFound
	}
	f.seq[id] = s
	return nil
}
func (f *fakeDataplane) OutboundSeq(id dataplane.SAID) (uint64, error)    { return f.get(id) }
func (f *fakeDataplane) SetOutboundSeq(id dataplane.SAID, s uint64) error { return f.set(id, s) }
func (f *fakeDataplane) ReplayState(id dataplane.SAID) (dataplane.Replay, error) {
	s, err := f.get(id)
	return dataplane.Replay{Seq: s}, err
}
func (f *fakeDataplane) SetReplayState(id dataplane.SAID, r dataplane.Replay) error {
	return f.set(id, r.Seq)
}
func (f *fakeDataplane) AdvanceReplay(id dataplane.SAID, delta uint64) error {
	s, err := f.get(id)
	if err != nil {
		return err
	}
	return f.set(id, s+delta)
}
func (*fakeDataplane) Events() <-chan dataplane.Event { return nil }
func (*fakeDataplane) Close() error                   { return nil }

func (f *fakeDataplane) installed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.seq)
}

func keyOf(sa *SA) SAKey {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	return SAKey{sa.spiI, sa.spiR}
}

func putKeys(c Changes) []SAKey {
	var ks []SAKey
	for _, r := range c.Put {
		ks = append(ks, SAKey{r.SPIi, r.SPIr})
	}
	return ks
}

// dpd runs one DPD exchange initiated by e on sa and waits for its answer.
func dpd(t *testing.T, e *Engine, sa *SA) {
	t.Helper()
	sa.mu.Lock()
	want := sa.stats.DPDAnswered + 1
	e.enqueue(sa, &dpdExchange{})
	sa.mu.Unlock()
	waitFor(t, "DPD answered", func() bool {
		sa.mu.Lock()
		defer sa.mu.Unlock()
		return sa.out == nil && sa.stats.DPDAnswered == want
	})
}

// establishTracked establishes an SA with change tracking on at b (the
// concentrator) from the start, and returns both ends' SAs after b's
// first Put.
func establishTracked(t *testing.T, p *pair) (a, b *SA) {
	t.Helper()
	if c := p.b.TakeChanges(false); len(c.Put)+len(c.Deleted) != 0 {
		t.Fatalf("changes before any SA: %+v", c)
	}
	p.establish()
	waitFor(t, "responder SA", func() bool { return len(p.b.List()) == 1 && len(p.b.List()[0].Children) == 1 })
	a, b = onlySA(t, p.a), onlySA(t, p.b)
	c := p.b.TakeChanges(false)
	if len(c.Put) != 1 || len(c.Deleted) != 0 || putKeys(c)[0] != keyOf(b) {
		t.Fatalf("after establishment: %d puts, %d deletes", len(c.Put), len(c.Deleted))
	}
	return a, b
}

// TestChangesDPDWithMIDSync is the point of per-SA tracking: with RFC 6311,
// DPD in either direction produces no record at all.
func TestChangesDPDWithMIDSync(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	p := newPair(t, client, server)
	dp := newFakeDataplane()
	p.b.SetDataplane(dp)
	a, b := establishTracked(t, p)
	for i := 0; i < 3; i++ {
		dpd(t, p.a, a)
		dpd(t, p.b, b)
	}
	if c := p.b.TakeChanges(true); len(c.Put)+len(c.Deleted) != 0 {
		t.Fatalf("DPD on an RFC 6311 SA: %d puts, %d deletes", len(c.Put), len(c.Deleted))
	}
}

// TestChangesDPDWithoutMIDSync: without RFC 6311 every exchange moves a
// counter the successor needs exactly; several between two polls give one
// record, and its Message IDs are the exact ones.
func TestChangesDPDWithoutMIDSync(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	server.MIDSync, server.ReplaySync = false, false
	p := newPair(t, client, server)
	a, b := establishTracked(t, p)
	for i := 0; i < 3; i++ {
		dpd(t, p.a, a)
	}
	c := p.b.TakeChanges(false)
	if len(c.Put) != 0 || len(c.Deleted) != 0 || len(c.MIDs) != 1 {
		t.Fatalf("3 DPDs from the peer: %d puts, %d deletes, %d MIDs", len(c.Put), len(c.Deleted), len(c.MIDs))
	}
	a.mu.Lock()
	aSend := a.nextSend
	a.mu.Unlock()
	if got := c.MIDs[0]; got.NextRecv != aSend || got.Key != keyOf(b) {
		t.Fatalf("replicated next receive %d of %v, peer's next send %d", got.NextRecv, got.Key, aSend)
	}
	dpd(t, p.b, b)
	c = p.b.TakeChanges(false)
	if len(c.MIDs) != 1 || len(c.Put) != 0 {
		t.Fatalf("DPD of ours: %d MIDs, %d puts", len(c.MIDs), len(c.Put))
	}
	a.mu.Lock()
	aRecv := a.nextRecv
	a.mu.Unlock()
	if got := c.MIDs[0].NextSend; got != aRecv {
		t.Fatalf("replicated next send %d, peer expects %d", got, aRecv)
	}
	if c := p.b.TakeChanges(false); len(c.Put)+len(c.MIDs) != 0 {
		t.Fatalf("nothing happened, yet %d puts, %d MIDs", len(c.Put), len(c.MIDs))
	}
	// A structural change while Message IDs are pending: one whole record.
	dpd(t, p.a, a)
	b.mu.Lock()
	p.b.touch(b)
	b.mu.Unlock()
	if c := p.b.TakeChanges(false); len(c.Put) != 1 || len(c.MIDs) != 0 {
		t.Fatalf("DPD then a change: %d puts, %d MIDs", len(c.Put), len(c.MIDs))
	}

	// A request of ours in flight: the record names its Message ID, which
	// a successor sends again.
	p.mu.Lock()
	p.drop = func(from string, _ []byte) bool { return from == "b" }
	p.mu.Unlock()
	b.mu.Lock()
	p.b.enqueue(b, &dpdExchange{})
	mid := b.out.mid
	b.mu.Unlock()
	recs := p.b.RecordsOn(p.bAddr.Addr())
	if len(recs) != 1 || recs[0].NextSend != mid {
		t.Fatalf("request %d in flight, records %+v", mid, len(recs))
	}
}

// TestChangesCounters: moving ESP counters are recorded only when asked,
// at once without RFC 6311, and with it only once the last record is ten
// seconds old.
func TestChangesCounters(t *testing.T) {
	for _, midSync := range []bool{false, true} {
		client, server := testConns("a long enough pre-shared key")
		server.MIDSync = midSync
		p := newPair(t, client, server)
		dp := newFakeDataplane()
		p.b.SetDataplane(dp)
		_, b := establishTracked(t, p)
		b.mu.Lock()
		c0 := b.children[0]
		out := dataplane.SAID{SPI: c0.spiOut, Src: addrOf(b.local), Dst: addrOf(b.remote)}
		b.mu.Unlock()
		if err := dp.SetOutboundSeq(out, 1000); err != nil {
			t.Fatal(err)
		}
		if c := p.b.TakeChanges(false); len(c.Put) != 0 {
			t.Fatalf("mid sync %v: counters recorded without being asked", midSync)
		}
		c := p.b.TakeChanges(true)
		if midSync {
			if len(c.Put) != 0 {
				t.Fatalf("RFC 6311 SA with a fresh record re-recorded for its counters")
			}
			b.mu.Lock()
			b.replAt = b.replAt.Add(-counterRecordAge - time.Second)
			b.mu.Unlock()
			c = p.b.TakeChanges(true)
		}
		if len(c.Put) != 1 || len(c.Put[0].Children) != 1 || c.Put[0].Children[0].OutSeq != 1000 {
			t.Fatalf("mid sync %v: moved counters gave %d puts", midSync, len(c.Put))
		}
		if c := p.b.TakeChanges(true); len(c.Put) != 0 {
			t.Fatalf("mid sync %v: counters recorded twice", midSync)
		}
	}
}

// TestChangesRekey: an IKE SA rekey replaces one record by another.
func TestChangesRekey(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	p := newPair(t, client, server)
	_, b := establishTracked(t, p)
	old := keyOf(b)
	b.mu.Lock()
	p.b.enqueue(b, &ikeRekeyExchange{})
	b.mu.Unlock()
	waitFor(t, "the old IKE SA to go", func() bool {
		l := p.b.List()
		return len(l) == 1 && l[0].SPIi != fmt.Sprintf("%016x", old.SPIi)
	})
	n := onlySA(t, p.b)
	c := p.b.TakeChanges(false)
	if len(c.Deleted) != 1 || c.Deleted[0] != old {
		t.Fatalf("deleted %v, want the old SA %v", c.Deleted, old)
	}
	if ks := putKeys(c); len(ks) != 1 || ks[0] != keyOf(n) {
		t.Fatalf("put %v, want the new SA %v", ks, keyOf(n))
	}
	if len(c.Put[0].Children) != 1 {
		t.Fatalf("new SA recorded with %d Child SAs", len(c.Put[0].Children))
	}
}

// TestChangesDelete: a delete by the peer and one of ours both end in
// Deleted, and nothing is recorded for the dead SA.
func TestChangesDelete(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	p := newPair(t, client, server)
	p.a.TakeChanges(false)
	a, _ := establishTracked(t, p)
	key := keyOf(a)
	p.a.TakeChanges(false)
	a.mu.Lock()
	p.a.enqueue(a, &deleteExchange{})
	a.mu.Unlock()
	waitFor(t, "both SAs gone", func() bool { return len(p.a.List()) == 0 && len(p.b.List()) == 0 })
	for _, e := range []*Engine{p.a, p.b} {
		c := e.TakeChanges(false)
		if len(c.Put) != 0 || len(c.Deleted) != 1 || c.Deleted[0] != key {
			t.Fatalf("after delete: put %v, deleted %v", putKeys(c), c.Deleted)
		}
		if c := e.TakeChanges(false); len(c.Deleted) != 0 {
			t.Fatal("deletion reported twice")
		}
	}
}

// TestRelease: a released SA leaves the table, the data plane and the pool
// without a word to the peer, and is not reported deleted.
func TestRelease(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	client.RequestVIP = true
	server.Pool = NewPool("vips", netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.9"))
	p := newPair(t, client, server)
	dp := newFakeDataplane()
	p.b.SetDataplane(dp)
	_, b := establishTracked(t, p)
	if dp.installed() != 2 || server.Pool.Leased() != 1 {
		t.Fatalf("before release: %d ESP SAs, %d leases", dp.installed(), server.Pool.Leased())
	}
	if n := p.b.Release(netip.MustParseAddr("192.0.2.77")); n != 0 {
		t.Fatalf("released %d SAs on an address that has none", n)
	}
	recs := p.b.RecordsOn(p.bAddr.Addr())
	if len(recs) != 1 || recs[0].SPIi != keyOf(b).SPIi || !recs[0].VIP.IsValid() {
		t.Fatalf("records on the address: %d", len(recs))
	}
	p.mu.Lock()
	sentBefore := len(p.sent["b"])
	p.mu.Unlock()
	if n := p.b.Release(p.bAddr.Addr()); n != 1 {
		t.Fatalf("released %d SAs, want 1", n)
	}
	if l := p.b.List(); len(l) != 0 {
		t.Fatalf("%d SAs after release", len(l))
	}
	if dp.installed() != 0 || server.Pool.Leased() != 0 || p.b.Stats().Established.Load() != 0 {
		t.Fatalf("after release: %d ESP SAs, %d leases, %d established", dp.installed(), server.Pool.Leased(),
			p.b.Stats().Established.Load())
	}
	if c := p.b.TakeChanges(true); len(c.Put)+len(c.Deleted) != 0 {
		t.Fatalf("release reported: put %v, deleted %v", putKeys(c), c.Deleted)
	}
	time.Sleep(50 * time.Millisecond)
	p.mu.Lock()
	sentAfter := len(p.sent["b"])
	p.mu.Unlock()
	if sentAfter != sentBefore {
		t.Fatalf("release sent %d messages to the peer", sentAfter-sentBefore)
	}
	if len(p.a.List()) != 1 {
		t.Fatal("the peer lost its SA")
	}
}

// TestTakeoverWithoutMIDSync: a node takes over the concentrator's SA from
// its last replicated record, with a peer that does not do RFC 6311. The
// predecessor may have answered one request after the record, or had one
// of its own answered; the successor and the peer carry on with DPD both
// ways in every case.
func TestTakeoverWithoutMIDSync(t *testing.T) {
	cases := []struct {
		name                string
		peerAfter, ownAfter bool
		ownCreate           bool // the predecessor's request was a CREATE_CHILD_SA
	}{
		{"record current", false, false, false},
		{"peer's request answered after the record", true, false, false},
		{"own request answered after the record", false, true, false},
		{"own CREATE_CHILD_SA answered after the record", false, true, true},
		{"both", true, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client, server := testConns("a long enough pre-shared key")
			server.MIDSync, server.ReplaySync = false, false
			p := newPair(t, client, server)
			a, b := establishTracked(t, p)
			// What a successor opens: the last whole record with the
			// Message IDs replicated since.
			base := p.b.Records()
			dpd(t, p.a, a)
			dpd(t, p.b, b)
			mids := p.b.TakeChanges(false).MIDs
			if len(base) != 1 || len(mids) != 1 || mids[0].Key != keyOf(b) {
				t.Fatalf("%d records, %d MIDs", len(base), len(mids))
			}
			base[0].NextSend, base[0].NextRecv = mids[0].NextSend, mids[0].NextRecv
			recs := base
			if tc.peerAfter {
				dpd(t, p.a, a)
			}
			if tc.ownAfter {
				b.mu.Lock()
				var x exchange = &dpdExchange{}
				if tc.ownCreate {
					x = &bareCreateChild{}
				}
				p.b.enqueue(b, x)
				b.mu.Unlock()
				waitFor(t, "answer", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.out == nil && b.nextSend == 2 })
			}

			old := p.b
			b2 := New(Config{Conns: []*Conn{server}, Logger: old.log, RetransmitTimeout: 200 * time.Millisecond,
				RetransmitTries: 2, Send: old.cfg.Send})
			old.Close()
			b2.Start()
			t.Cleanup(b2.Close)
			p.mu.Lock()
			p.b = b2
			p.mu.Unlock()
			if n, err := b2.Restore(recs, RestoreOptions{Stale: true}); n != 1 || err != nil {
				t.Fatalf("restore: %d %v", n, err)
			}
			nb := onlySA(t, b2)
			for i := 0; i < 2; i++ {
				dpd(t, b2, nb)
				dpd(t, p.a, a)
			}
			a.mu.Lock()
			aSend, aRecv := a.nextSend, a.nextRecv
			a.mu.Unlock()
			nb.mu.Lock()
			bSend, bRecv := nb.nextSend, nb.nextRecv
			nb.mu.Unlock()
			if aSend != bRecv || aRecv != bSend {
				t.Fatalf("Message IDs: peer sends %d receives %d, successor sends %d receives %d", aSend, aRecv, bSend, bRecv)
			}
		})
	}
}

// bareCreateChild is a CREATE_CHILD_SA request without an SA payload; the
// peer answers it with an error, and nothing changes.
type bareCreateChild struct{}

func (*bareCreateChild) kind() wire.ExchangeType                 { return wire.CREATE_CHILD_SA }
func (*bareCreateChild) build(*Engine, *SA, *wire.Builder) error { return nil }
func (*bareCreateChild) process(*Engine, *SA, *inbound) error    { return nil }

// TestRestoreIVSpread: two nodes restoring the same record start their IV
// counters above its mark and apart from each other.
func TestRestoreIVSpread(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	p := newPair(t, client, server)
	establishTracked(t, p)
	recs := p.b.RecordsOn(p.bAddr.Addr())
	var ivs [2]uint64
	for i := range ivs {
		e := New(Config{Conns: []*Conn{server}, Send: func(netip.AddrPort, netip.AddrPort, []byte) error { return nil }})
		if n, err := e.Restore(recs, RestoreOptions{}); n != 1 || err != nil {
			t.Fatalf("restore: %d %v", n, err)
		}
		sa := onlySA(t, e)
		ivs[i] = sa.sk.NextIV()
		if ivs[i] < recs[0].IVMark {
			t.Fatalf("restored IV counter %d below the mark %d", ivs[i], recs[0].IVMark)
		}
		// Let the next restore claim the same Child SPI again.
		e.Release(p.bAddr.Addr())
	}
	if ivs[0] == ivs[1] {
		t.Fatalf("two restores of one record start at the same IV %d", ivs[0])
	}
}

// BenchmarkTakeChangesCounters is the once-a-second poll over 60,000
// SAs with one Child SA each, none changed: with RFC 6311 and fresh
// records it reads nothing from the data plane, without it the outbound
// sequence number of each Child SA.
func BenchmarkTakeChangesCounters(b *testing.B) {
	for _, midSync := range []bool{true, false} {
		b.Run(map[bool]string{true: "rfc6311", false: "plain"}[midSync], func(b *testing.B) {
			client, server := testConns("a long enough pre-shared key")
			server.MIDSync, server.ReplaySync = midSync, midSync
			p := newPair(&testing.T{}, client, server)
			p.establish()
			waitFor(&testing.T{}, "responder", func() bool { return len(p.b.List()) == 1 && len(p.b.List()[0].Children) == 1 })
			tmpl := p.b.RecordsOn(p.bAddr.Addr())[0]
			p.a.Close()
			p.b.Close()
			const n = 60000
			recs := make([]Record, n)
			for i := range recs {
				r := tmpl
				r.SPIi, r.SPIr = uint64(i+1)<<32|7, uint64(i+1)<<32|9
				r.Children = []ChildRecord{tmpl.Children[0]}
				r.Children[0].SPIIn, r.Children[0].SPIOut = uint32(0x10000000+i), uint32(0x20000000+i)
				r.Saved = time.Now()
				recs[i] = r
			}
			e := New(Config{Conns: []*Conn{server}, Dataplane: newFakeDataplane(),
				Send: func(netip.AddrPort, netip.AddrPort, []byte) error { return nil }})
			if got, err := e.Restore(recs, RestoreOptions{}); got != n {
				b.Fatalf("restored %d: %v", got, err)
			}
			if c := e.TakeChanges(true); len(c.Put) != n {
				b.Fatalf("baseline %d", len(c.Put))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if c := e.TakeChanges(true); len(c.Put) != 0 {
					b.Fatalf("%d puts without a change", len(c.Put))
				}
			}
			b.StopTimer()
			e.Release(tmpl.Local.Addr())
		})
	}
}

// TestChangesStructural: on an RFC 6311 SA, a Child SA rekey and a DPD
// timeout are recorded (a new record, then the deletion); tracking that
// starts late reports every established SA first.
func TestChangesStructural(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	p := newPair(t, client, server)
	p.establish()
	waitFor(t, "responder SA", func() bool { return len(p.b.List()) == 1 && len(p.b.List()[0].Children) == 1 })
	b := onlySA(t, p.b)
	if c := p.b.TakeChanges(false); len(c.Put) != 1 || putKeys(c)[0] != keyOf(b) {
		t.Fatalf("first poll reported %d SAs, want the one established before it", len(c.Put))
	}
	if c := p.b.TakeChanges(false); len(c.Put) != 0 {
		t.Fatalf("second poll: %d puts", len(c.Put))
	}

	b.mu.Lock()
	oldIn := b.children[0].spiIn
	p.b.enqueue(b, &childRekeyExchange{old: b.children[0]})
	b.mu.Unlock()
	waitFor(t, "Child SA rekeyed", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.out == nil && len(b.queue) == 0 && len(b.children) == 1 && b.children[0].spiIn != oldIn
	})
	c := p.b.TakeChanges(false)
	if len(c.Put) != 1 || len(c.Put[0].Children) != 1 || c.Put[0].Children[0].SPIIn == oldIn {
		t.Fatalf("after Child SA rekey: %d puts", len(c.Put))
	}

	// The peer goes silent: our DPD times out and the SA is deleted.
	p.mu.Lock()
	p.drop = func(from string, _ []byte) bool { return from == "a" }
	p.mu.Unlock()
	b.mu.Lock()
	p.b.cfg.RetransmitTries = 1
	p.b.enqueue(b, &dpdExchange{})
	b.mu.Unlock()
	waitFor(t, "DPD timeout", func() bool { return len(p.b.List()) == 0 })
	c = p.b.TakeChanges(false)
	if len(c.Put) != 0 || len(c.Deleted) != 1 || c.Deleted[0] != keyOf(b) {
		t.Fatalf("after DPD timeout: put %v, deleted %v", putKeys(c), c.Deleted)
	}
}
