package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hike-vpn/hike/internal/ike"
)

// TestStatus: the JSON shape the control socket serves, and what a leader
// and a follower know: the leader hears every member, a follower only the
// leader; VIP homes and owners, SA counts per owner, and what the FSM and
// the connections carried.
func TestStatus(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.startAll()
	li := tc.leader()
	fi := (li + 1) % 3
	leader, follower := tc.nodes[li], tc.nodes[fi]
	for _, nd := range tc.nodes {
		waitFor(t, 5*time.Second, "VIPs claimed", func() bool { return len(nd.VIPs()) == 3 })
	}
	var recs []ike.Record
	for i := range 5 {
		recs = append(recs, testRecord(uint64(100+i), tc.peers[fi].VIPs[0].Addr()))
	}
	if err := follower.ApplyRecords(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if err := follower.DeleteSAs(context.Background(), []SAKey{{recs[0].SPIi, recs[0].SPIr}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "records everywhere", func() bool {
		for _, nd := range tc.nodes {
			if got, _ := nd.Records(tc.peers[fi].ID); len(got) != 4 {
				return false
			}
		}
		return true
	})

	// The shape, key by key.
	b, err := json.Marshal(leader.Status())
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	keysOf := func(m map[string]json.RawMessage) []string { return slices.Sorted(maps.Keys(m)) }
	if got, want := keysOf(raw), []string{"applied_index", "leader", "members", "node", "replication", "sas", "serving", "term", "vips", "witness"}; !slices.Equal(got, want) {
		t.Errorf("status keys %v, want %v", got, want)
	}
	var sub struct {
		Members     []map[string]json.RawMessage `json:"members"`
		VIPs        []map[string]json.RawMessage `json:"vips"`
		Replication map[string]json.RawMessage   `json:"replication"`
	}
	json.Unmarshal(b, &sub)
	if got, want := keysOf(sub.Members[0]), []string{"address", "id", "last_contact_ms", "leader", "reachable", "witness"}; !slices.Equal(got, want) {
		t.Errorf("member keys %v, want %v", got, want)
	}
	if got, want := keysOf(sub.VIPs[0]), []string{"home", "owner", "vip"}; !slices.Equal(got, want) {
		t.Errorf("VIP keys %v, want %v", got, want)
	}
	if got, want := keysOf(sub.Replication), []string{"entries", "entry_bytes", "rx_bytes", "sa_deletes", "sa_mids", "sa_puts", "sa_refused", "tx_bytes", "vip_moves"}; !slices.Equal(got, want) {
		t.Errorf("replication keys %v, want %v", got, want)
	}
	if !strings.Contains(string(b), `"vip":"192.0.2.11"`) {
		t.Errorf("VIP not as an address string: %s", b)
	}

	for _, i := range []int{li, fi} {
		st := tc.nodes[i].Status()
		if st.Node != tc.peers[i].ID || st.Leader != tc.peers[li].ID || !st.Serving || st.Witness || st.Term == 0 || st.AppliedIndex == 0 {
			t.Errorf("%s: %+v", tc.peers[i].ID, st)
		}
		if len(st.Members) != 3 {
			t.Fatalf("%s: members %+v", st.Node, st.Members)
		}
		for j, m := range st.Members {
			if m.ID != tc.peers[j].ID || m.Address != tc.peers[j].Address || m.Leader != (j == li) {
				t.Errorf("%s: member %+v", st.Node, m)
			}
			// The leader knows everyone; a follower itself and the leader.
			known := i == li || j == li || j == i
			if known && (!m.Reachable || m.LastContactMS < 0 || m.LastContactMS > 1000) {
				t.Errorf("%s sees %s: %+v", st.Node, m.ID, m)
			}
			if !known && (m.Reachable || m.LastContactMS != -1) {
				t.Errorf("%s claims to know %s: %+v", st.Node, m.ID, m)
			}
		}
		if len(st.VIPs) != 3 {
			t.Fatalf("%s: VIPs %+v", st.Node, st.VIPs)
		}
		for j, v := range st.VIPs {
			if v.VIP != tc.peers[j].VIPs[0].Addr() || v.Home != tc.peers[j].ID || v.Owner != tc.peers[j].ID {
				t.Errorf("%s: VIP %+v", st.Node, v)
			}
		}
		if want := map[string]int{tc.peers[fi].ID: 4}; !maps.Equal(st.SAs, want) {
			t.Errorf("%s: SAs %v, want %v", st.Node, st.SAs, want)
		}
		r := st.Replication
		// Three claims (one VIP command each), at least one entry of
		// puts and one of the delete.
		if r.SAPuts != 5 || r.SADeletes != 1 || r.VIPMoves != 3 || r.Entries < 5 || r.EntryBytes < 5*1000 || r.TxBytes == 0 || r.RxBytes == 0 {
			t.Errorf("%s: replication %+v", st.Node, r)
		}
	}
	// Bytes only grow, and the follower wrote the records it forwarded.
	st1 := follower.Status().Replication
	if err := follower.ApplyRecords(context.Background(), []ike.Record{testRecord(200, offVIP)}); err != nil {
		t.Fatal(err)
	}
	st2 := follower.Status().Replication
	if st2.TxBytes < st1.TxBytes+1000 {
		t.Errorf("forwarding a ~1 KiB record: tx %d -> %d", st1.TxBytes, st2.TxBytes)
	}
}

// TestRestartHandback: a node that fails loses its VIP; restarted with its
// data directory it catches up within seconds but does not take the VIP
// back by itself; Handback, called on a third node, returns it with its SAs,
// and refuses while the node is down.
func TestRestartHandback(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.startAll()
	li := tc.leader()
	xi := (li + 1) % 3 // the node that fails: a follower
	oi := (li + 2) % 3 // the other follower
	x := tc.nodes[xi]
	xid, xvip := tc.peers[xi].ID, tc.peers[xi].VIPs[0].Addr()
	waitFor(t, 5*time.Second, "VIPs claimed", func() bool { return len(x.VIPs()) == 3 })
	rec := testRecord(77, xvip)
	if err := x.ApplyRecords(context.Background(), []ike.Record{rec}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "record replicated", func() bool { got, _ := tc.nodes[oi].Records(xid); return len(got) == 1 })
	x.Close()
	var heir string
	waitFor(t, 8*time.Second, "takeover", func() bool {
		heir = tc.nodes[oi].VIPs()[xvip]
		return heir != xid && heir != ""
	})

	// Down: nothing to hand back to.
	if _, err := tc.nodes[oi].Handback(context.Background(), xid); !errors.Is(err, errRefused) || !strings.Contains(err.Error(), "not reachable") {
		t.Fatalf("handback to a dead node: %v", err)
	}

	// Meanwhile the survivors write more; the restarted node must see it.
	later := testRecord(78, tc.peers[li].VIPs[0].Addr())
	if err := tc.nodes[li].ApplyRecords(context.Background(), []ike.Record{later}); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	x = tc.start(xi)
	// It must not serve on the state it had before it failed: by the time
	// it serves, it knows its VIP is gone. (VIPs only move forward, so a
	// stale map seen after Serving was stale when Serving was read.)
	for !x.Serving() {
		if time.Since(restarted) > 5*time.Second {
			t.Fatal("restarted node not serving after 5s")
		}
		time.Sleep(100 * time.Microsecond)
	}
	if got := x.VIPs()[xvip]; got != heir {
		t.Fatalf("restarted node serves while it thinks VIP %s belongs to %q", xvip, got)
	}
	current := func() bool {
		got, _ := x.Records(tc.peers[li].ID)
		moved, _ := x.Records(heir)
		return x.Serving() && x.VIPs()[xvip] == heir && slices.ContainsFunc(got, func(r ike.Record) bool { return recordsEqual(r, later) }) &&
			slices.ContainsFunc(moved, func(r ike.Record) bool { return recordsEqual(r, rec) })
	}
	for deadline := time.Now().Add(5 * time.Second); !current(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			got, _ := x.Records(tc.peers[li].ID)
			moved, _ := x.Records(heir)
			t.Fatalf("restarted node not current after 5s: serving %v, VIPs %v, %d records of %s, %d of %s; status %+v",
				x.Serving(), x.VIPs(), len(got), tc.peers[li].ID, len(moved), heir, x.Status())
		}
	}
	t.Logf("restarted node serving and current after %v", time.Since(restarted))

	// Several monitor rounds, and a leader change, must not give the VIP back.
	time.Sleep(time.Second)
	tc.nodes[li].raft.LeadershipTransfer().Error()
	tc.leader()
	time.Sleep(500 * time.Millisecond)
	for i, nd := range tc.nodes {
		if got := nd.VIPs()[xvip]; got != heir {
			t.Fatalf("%s: VIP %s owned by %q after the restart, want %q", tc.peers[i].ID, xvip, got, heir)
		}
	}

	var asker *Node
	for i, nd := range tc.nodes {
		if i != xi && nd.Leader() != tc.peers[i].ID {
			asker = nd // a follower that is not the returning node
		}
	}
	if asker == nil {
		asker = tc.nodes[oi]
	}
	moved, err := asker.Handback(context.Background(), xid)
	if err != nil || moved != 1 {
		t.Fatalf("handback: moved %d, %v", moved, err)
	}
	for _, nd := range tc.nodes {
		waitFor(t, 5*time.Second, "VIP home", func() bool {
			got, _ := nd.Records(xid)
			return nd.VIPs()[xvip] == xid && slices.ContainsFunc(got, func(r ike.Record) bool { return recordsEqual(r, rec) })
		})
	}
	if moved, err := x.Handback(context.Background(), xid); err != nil || moved != 0 {
		t.Fatalf("second handback: moved %d, %v", moved, err)
	}
	for _, bad := range []string{"node9", ""} {
		if _, err := asker.Handback(context.Background(), bad); err == nil {
			t.Errorf("handback to %q accepted", bad)
		}
	}
}

// TestLeaveJoin: in a 4-node cluster the leader leaves: it hands over
// leadership, its VIP and the SAs on it go to a survivor, and it stops
// serving. A 3-voter cluster refuses to shrink further. The node joins
// again, catches up and takes its VIP back by Handback.
func TestLeaveJoin(t *testing.T) {
	tc := newTestCluster(t, 4)
	tc.startAll()
	li := tc.leader()
	l := tc.nodes[li]
	lid, lvip := tc.peers[li].ID, tc.peers[li].VIPs[0].Addr()
	waitFor(t, 5*time.Second, "VIPs claimed", func() bool { return len(l.VIPs()) == 4 })
	rec := testRecord(55, lvip)
	if err := l.ApplyRecords(context.Background(), []ike.Record{rec}); err != nil {
		t.Fatal(err)
	}
	if err := l.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	var rest []*Node
	for i, nd := range tc.nodes {
		if i != li {
			rest = append(rest, nd)
		}
	}
	waitFor(t, 5*time.Second, "3 voters without the leaver", func() bool {
		for _, nd := range rest {
			ms := nd.Members()
			if len(ms) != 3 || slices.ContainsFunc(ms, func(m Member) bool { return m.ID == lid }) {
				return false
			}
		}
		return true
	})
	heir := rest[0].VIPs()[lvip]
	if heir == lid || heir == "" {
		t.Fatalf("VIP of the leaver owned by %q", heir)
	}
	for _, nd := range rest {
		if got, _ := nd.Records(heir); !slices.ContainsFunc(got, func(r ike.Record) bool { return recordsEqual(r, rec) }) {
			t.Fatalf("the SA on the VIP did not move to %s", heir)
		}
	}
	waitFor(t, 5*time.Second, "the leaver stops serving", func() bool { return !l.Serving() })
	if nl := rest[0].Leader(); nl == "" || nl == lid {
		t.Fatalf("leader after leave: %q", nl)
	}

	if err := rest[0].Leave(context.Background()); !errors.Is(err, errRefused) {
		t.Fatalf("leave from 3 voters: %v", err)
	}
	if _, err := rest[0].Handback(context.Background(), lid); !errors.Is(err, errRefused) {
		t.Fatalf("handback to a node that left: %v", err)
	}

	if err := l.Join(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "4 voters, the joiner serving", func() bool {
		for _, nd := range tc.nodes {
			if len(nd.Members()) != 4 {
				return false
			}
		}
		return l.Serving()
	})
	if err := l.Join(context.Background()); err != nil {
		t.Fatalf("joining again: %v", err)
	}
	moved, err := rest[1].Handback(context.Background(), lid)
	if err != nil || moved != 1 {
		t.Fatalf("handback after join: moved %d, %v", moved, err)
	}
	waitFor(t, 5*time.Second, "VIP home", func() bool { return l.VIPs()[lvip] == lid && rest[2].VIPs()[lvip] == lid })

	// A follower leaves too; its request is forwarded to the leader.
	var f *Node
	for _, nd := range rest {
		if nd.raft.State() != raft.Leader {
			f = nd
			break
		}
	}
	fid := f.opts.Cluster.NodeID
	fvip := f.opts.Cluster.Self().VIPs[0].Addr()
	if err := f.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the follower out, its VIP elsewhere", func() bool {
		o := l.VIPs()[fvip]
		return len(l.Members()) == 3 && !slices.ContainsFunc(l.Members(), func(m Member) bool { return m.ID == fid }) &&
			o != fid && o != "" && !f.Serving()
	})
}

// TestOrphanVIP: a VIP left with a node that is no voter is moved to a
// member, as if its owner had failed.
func TestOrphanVIP(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.startAll()
	li := tc.leader()
	l := tc.nodes[li]
	waitFor(t, 5*time.Second, "VIPs claimed", func() bool { return len(l.VIPs()) == 3 })
	ghost := netip.MustParseAddr("198.51.100.99")
	if err := l.SetVIPOwner(context.Background(), ghost, "", "gone"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "orphan moved", func() bool {
		o := l.VIPs()[ghost]
		return o != "gone" && o != ""
	})
}
