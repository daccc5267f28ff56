package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/ike"
)

// TestRecordsOn: a node taking over one VIP opens only the records that
// live on it.
func TestRecordsOn(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.startAll()
	n1 := tc.nodes[0]
	waitFor(t, 5*time.Second, "VIPs claimed", func() bool { return n1.VIPs()[vip1] == "node1" && n1.Serving() })
	recs := []ike.Record{testRecord(1, vip1), testRecord(2, vip1), testRecord(3, offVIP)}
	if err := n1.ApplyRecords(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	// Committed on the leader; node1 may apply it a moment later.
	waitFor(t, 5*time.Second, "the records applied on node1", func() bool {
		all, _ := n1.Records("node1")
		return len(all) == 3
	})
	on, err := n1.RecordsOn("node1", vip1)
	if err != nil || len(on) != 2 {
		t.Fatalf("on %v: %d records, %v", vip1, len(on), err)
	}
	for _, r := range on {
		if r.Local.Addr() != vip1 {
			t.Fatalf("record on %v", r.Local)
		}
	}
	if other, _ := n1.RecordsOn("node2", vip1); len(other) != 0 {
		t.Fatalf("node2's on %v: %d", vip1, len(other))
	}
}

// TestApplyMIDs: Message IDs replicated after a record reach every node's
// copy, and the record opens with them.
func TestApplyMIDs(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.startAll()
	n1, n3 := tc.nodes[0], tc.nodes[2]
	waitFor(t, 5*time.Second, "VIPs claimed", func() bool { return n1.VIPs()[vip1] == "node1" && n1.Serving() })
	rec := testRecord(1, vip1)
	if err := n1.ApplyRecords(context.Background(), []ike.Record{rec}); err != nil {
		t.Fatal(err)
	}
	m := ike.MIDs{Key: ike.SAKey{SPIi: rec.SPIi, SPIr: rec.SPIr}, NextSend: rec.NextSend + 7, NextRecv: rec.NextRecv + 9}
	if err := n1.ApplyMIDs(context.Background(), []ike.MIDs{m}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the Message IDs on node3", func() bool {
		got, _ := n3.Records("node1")
		return len(got) == 1 && got[0].NextSend == m.NextSend && got[0].NextRecv == m.NextRecv
	})
	if st := n3.Status(); st.Replication.SAMIDs != 1 {
		t.Fatalf("node3 applied %d Message ID updates", st.Replication.SAMIDs)
	}
}
