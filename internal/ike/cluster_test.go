package ike

import (
	"testing"
	"time"
)

// TestRestoreFreshReqIDs: records from another member carry its ReqIDs;
// two such records with the same ReqID restored on one member must not
// share a data-plane policy, while a restart keeps the recorded ReqID.
func TestRestoreFreshReqIDs(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	p := newPair(t, client, server)
	p.establish()
	recs := p.b.Records()
	if len(recs) != 1 || len(recs[0].Children) != 1 {
		t.Fatalf("records: %+v", len(recs))
	}
	orig := recs[0]
	twin := orig
	twin.SPIi, twin.SPIr = orig.SPIi+1, orig.SPIr+1
	twin.Children = []ChildRecord{orig.Children[0]}
	twin.Children[0].SPIIn, twin.Children[0].SPIOut = orig.Children[0].SPIIn+1, orig.Children[0].SPIOut+1

	restore := func(fresh bool) []uint32 {
		e := New(Config{Conns: []*Conn{server}, Logger: p.b.log, RetransmitTimeout: time.Second, Send: p.b.cfg.Send})
		e.SetDataplane(newFakeDataplane())
		e.Start()
		defer e.Close()
		if n, err := e.Restore([]Record{orig, twin}, RestoreOptions{FreshReqIDs: fresh}); n != 2 || err != nil {
			t.Fatalf("restore: %d %v", n, err)
		}
		var ids []uint32
		e.table.Range(func(sa *SA) bool {
			sa.mu.Lock()
			for _, c := range sa.children {
				ids = append(ids, c.reqID)
			}
			sa.mu.Unlock()
			return true
		})
		return ids
	}
	kept := restore(false)
	if len(kept) != 2 || kept[0] != orig.Children[0].ReqID || kept[1] != orig.Children[0].ReqID {
		t.Fatalf("restart: ReqIDs %v, want both %d", kept, orig.Children[0].ReqID)
	}
	fresh := restore(true)
	if len(fresh) != 2 || fresh[0] == fresh[1] {
		t.Fatalf("takeover: ReqIDs %v, want two distinct", fresh)
	}
}

// TestSPISlots: a cluster member's inbound Child SPIs carry its slot in
// the top bits, so that no two members allocate the same SPI.
func TestSPISlots(t *testing.T) {
	for _, tc := range []struct{ slot, slots, shift int }{{0, 3, 30}, {2, 3, 30}, {4, 7, 29}, {1, 2, 31}} {
		e := &Engine{cfg: Config{SPISlot: tc.slot, SPISlots: tc.slots}}
		var got []uint32
		for range 200 {
			spi := e.allocChildSPI()
			got = append(got, spi)
			if int(spi>>tc.shift) != tc.slot || spi < 256 {
				t.Fatalf("slot %d of %d: SPI %08x", tc.slot, tc.slots, spi)
			}
		}
		for _, spi := range got {
			releaseChildSPI(spi)
		}
	}
}
