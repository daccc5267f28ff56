package ike

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestRestoreStaleRecord: a's records are taken, a dies, a new engine
// restores them as stale (a crash) and resynchronises with b before sending
// anything else; the SA keeps its SPIs and carries on.
func TestRestoreStaleRecord(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	p := newPair(t, client, server)
	info := p.establish()
	recs := p.a.Records()
	if len(recs) != 1 || len(recs[0].Children) != 1 {
		t.Fatalf("records: %d", len(recs))
	}
	// The record survives JSON (the state file) and never prints its keys.
	data, err := json.Marshal(recs)
	if err != nil {
		t.Fatal(err)
	}
	var back []Record
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if s := strings.ToLower(recs[0].String()); !strings.Contains(s, "redacted") {
		t.Fatalf("record prints as %q", s)
	}

	// Exchanges after the record: both sides move on.
	a := onlySA(t, p.a)
	for i := 0; i < 3; i++ {
		a.mu.Lock()
		p.a.enqueue(a, &dpdExchange{})
		a.mu.Unlock()
		waitFor(t, "DPD", func() bool { a.mu.Lock(); defer a.mu.Unlock(); return a.out == nil && a.nextSend == uint32(3+i) })
	}
	b := onlySA(t, p.b)
	b.mu.Lock()
	p.b.enqueue(b, &dpdExchange{})
	b.mu.Unlock()
	waitFor(t, "b's DPD", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.out == nil && b.nextSend == 1 })

	// a crashes; a new a restores the stale record.
	old := p.a
	a2 := New(Config{Conns: []*Conn{client}, Logger: old.log, RetransmitTimeout: 200 * time.Millisecond,
		Send: old.cfg.Send})
	a2.Start()
	old.Close()
	p.mu.Lock()
	p.a = a2
	p.mu.Unlock()
	n, err := a2.Restore(back, RestoreOptions{Stale: true, Sync: ResyncOptions{Timeout: 100 * time.Millisecond}})
	if err != nil || n != 1 {
		t.Fatalf("restore: %d %v", n, err)
	}
	waitFor(t, "sync answered", func() bool { return p.b.Stats().SyncsAnswered.Load() == 1 })
	r := onlySA(t, a2)
	waitFor(t, "sync complete", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.resync != nil && !r.resync.active })
	got, err := a2.Show(info.ID)
	if err != nil || got.SPIi != info.SPIi || got.SPIr != info.SPIr || len(got.Children) != 1 {
		t.Fatalf("restored SA: %+v %v", got, err)
	}
	// The restored SA talks: DPD both ways.
	r.mu.Lock()
	a2.enqueue(r, &dpdExchange{})
	r.mu.Unlock()
	b.mu.Lock()
	p.b.enqueue(b, &dpdExchange{})
	b.mu.Unlock()
	waitFor(t, "DPD after restore", func() bool {
		r.mu.Lock()
		b.mu.Lock()
		defer r.mu.Unlock()
		defer b.mu.Unlock()
		return r.out == nil && b.out == nil && r.stats.DPDAnswered >= 1 && b.stats.DPDAnswered >= 2
	})
}
