package ike

import (
	"testing"
	"time"
)

// BenchmarkRestoreStale: what a takeover costs the engine per IKE SA
// (no Child SA): restore from the record, start the RFC 6311 sync, send
// its request. The daemon restores in chunks of 250, as here.
func BenchmarkRestoreStale(b *testing.B) {
	b.ReportAllocs()
	client, server := testConns("a long enough pre-shared key")
	p := newPair(b, client, server)
	p.establish()
	rec := p.b.Records()[0]
	rec.Children = nil
	e := New(Config{Conns: []*Conn{server}, Logger: p.b.log, RetransmitTimeout: time.Second, Send: p.b.cfg.Send})
	e.Start()
	defer e.Close()
	recs := make([]Record, b.N)
	for i := range recs {
		recs[i] = rec
		recs[i].SPIi, recs[i].SPIr = uint64(i)+1000, uint64(i)+5000000
	}
	b.ResetTimer()
	for i := 0; i < b.N; i += 250 {
		e.Restore(recs[i:min(i+250, b.N)], RestoreOptions{Stale: true, FreshReqIDs: true})
	}
}
