package cluster

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hike-vpn/hike/internal/ike"
)

var (
	vip1 = netip.MustParseAddr("192.0.2.11")
	// offVIP is a local address that is no VIP: any node may write SAs
	// on it, while a VIP's SAs are its owner's to write.
	offVIP = netip.MustParseAddr("203.0.113.1")
)

// TestReplication: three nodes elect a leader and agree on every VIP's
// configured owner; records applied on a follower (forwarded) and on the
// leader reach every node, decrypt to what was applied, and deletes too.
func TestReplication(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.startAll()
	li := tc.leader()
	fi := (li + 1) % 3
	follower, leader := tc.nodes[fi], tc.nodes[li]
	if !slices.ContainsFunc(follower.Members(), func(m Member) bool { return m.Leader && m.ID == tc.peers[li].ID }) {
		waitFor(t, 5*time.Second, "members with leader", func() bool {
			return slices.ContainsFunc(follower.Members(), func(m Member) bool { return m.Leader && m.ID == tc.peers[li].ID })
		})
	}
	if got := len(follower.Members()); got != 3 {
		t.Fatalf("members: %d", got)
	}

	for _, nd := range tc.nodes {
		waitFor(t, 5*time.Second, "configured VIP owners", func() bool {
			v := nd.VIPs()
			for _, p := range tc.peers {
				if v[p.VIPs[0].Addr()] != p.ID {
					return false
				}
			}
			return true
		})
	}

	ctx := context.Background()
	fLocal := tc.peers[fi].VIPs[0].Addr()
	var recs []ike.Record
	for i := range 50 {
		recs = append(recs, testRecord(uint64(1000+i), fLocal))
	}
	// Two concurrent callers exercise the batcher.
	errc := make(chan error, 2)
	go func() { errc <- follower.ApplyRecords(ctx, recs[:25]) }()
	go func() { errc <- follower.ApplyRecords(ctx, recs[25:]) }()
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	lrec := testRecord(7, tc.peers[li].VIPs[0].Addr())
	if err := leader.ApplyRecords(ctx, []ike.Record{lrec}); err != nil {
		t.Fatal(err)
	}
	for _, nd := range tc.nodes {
		waitFor(t, 5*time.Second, "records on "+nd.opts.Cluster.NodeID, func() bool {
			got, err := nd.Records(tc.peers[fi].ID)
			return err == nil && len(got) == len(recs)
		})
		got, _ := nd.Records(tc.peers[fi].ID)
		slices.SortFunc(got, func(a, b ike.Record) int { return int(a.SPIi) - int(b.SPIi) })
		for i := range recs {
			if !recordsEqual(got[i], recs[i]) {
				t.Fatalf("%s: record %d differs", nd.opts.Cluster.NodeID, i)
			}
		}
		waitFor(t, 5*time.Second, "leader's record", func() bool {
			got, err := nd.Records(tc.peers[li].ID)
			return err == nil && len(got) == 1 && recordsEqual(got[0], lrec)
		})
	}

	if err := follower.DeleteSAs(ctx, []SAKey{{recs[0].SPIi, recs[0].SPIr}}); err != nil {
		t.Fatal(err)
	}
	for _, nd := range tc.nodes {
		waitFor(t, 5*time.Second, "delete", func() bool {
			got, _ := nd.Records(tc.peers[fi].ID)
			return len(got) == len(recs)-1
		})
	}
}

// TestForwardOwnerCheck: a follower cannot write SAs in another node's
// name; the leader checks the owner against the client certificate.
func TestForwardOwnerCheck(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.startAll()
	li := tc.leader()
	f := tc.nodes[(li+1)%3]
	other := tc.peers[(li+2)%3].ID
	ops, err := f.seal.seal([]ike.Record{testRecord(1, vip1)})
	if err != nil {
		t.Fatal(err)
	}
	cmd := appendOp(appendSAHeader(nil, other), &ops[0])
	err = f.apply(context.Background(), cmd)
	if !errors.Is(err, errRefused) {
		t.Fatalf("forged owner: %v", err)
	}
	if got, _ := tc.nodes[li].Records(other); len(got) != 0 {
		t.Fatalf("forged records applied: %d", len(got))
	}
}

// TestEncryptedAtRest: after records with a known key pattern went through
// the log and a snapshot, no file in any data directory holds the pattern,
// while the records' cleartext metadata (SPIs) is there, so the search does
// look at the data.
func TestEncryptedAtRest(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.startAll()
	li := tc.leader()
	var recs []ike.Record
	for i := range 20 {
		recs = append(recs, testRecord(0x5151_0000_0000_0000+uint64(i), offVIP))
	}
	if err := tc.nodes[li].ApplyRecords(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	for _, nd := range tc.nodes {
		waitFor(t, 5*time.Second, "replicated", func() bool {
			got, _ := nd.Records(tc.peers[li].ID)
			return len(got) == len(recs)
		})
		if err := nd.raft.Snapshot().Error(); err != nil {
			t.Fatal(err)
		}
	}
	// The decrypted records do carry the marker.
	got, _ := tc.nodes[0].Records(tc.peers[li].ID)
	if !bytes.Contains(got[0].Keys.D, marker) {
		t.Fatal("test records lack the marker")
	}
	spi := []byte{0x51, 0x51, 0, 0, 0, 0, 0, 0}
	for _, o := range tc.opts {
		var sawSPI, sawSnap bool
		filepath.WalkDir(o.Cluster.DataDir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, marker) {
				t.Errorf("%s holds key material in the clear", p)
			}
			sawSPI = sawSPI || bytes.Contains(b, spi)
			sawSnap = sawSnap || filepath.Base(p) == "state.bin"
			return nil
		})
		if !sawSPI || !sawSnap {
			t.Errorf("%s: log or snapshot not found (SPIs %v, snapshot %v)", o.Cluster.DataDir, sawSPI, sawSnap)
		}
	}
}

// TestSnapshotCatchUp: a node that was down while the leader compacted its
// log comes back and is brought up to date by a snapshot.
func TestSnapshotCatchUp(t *testing.T) {
	tc := newTestCluster(t, 3)
	for i := range tc.opts {
		tc.opts[i].tune = func(c *raft.Config) {
			c.SnapshotThreshold = 16
			c.TrailingLogs = 4
			c.SnapshotInterval = 200 * time.Millisecond
		}
		// raft-wal drops compacted entries only with whole segments.
		tc.opts[i].segmentSize = 16 << 10
	}
	tc.startAll()
	li := tc.leader()
	down := (li + 1) % 3
	tc.nodes[down].Close()
	ctx := context.Background()
	var want []ike.Record
	for i := range 60 {
		r := testRecord(uint64(5000+i), offVIP)
		want = append(want, r)
		if err := tc.nodes[li].ApplyRecords(ctx, []ike.Record{r}); err != nil {
			t.Fatal(err)
		}
	}
	leader := tc.nodes[li]
	waitFor(t, 5*time.Second, "leader snapshot", func() bool {
		return leader.raft.Stats()["last_snapshot_index"] != "0"
	})
	restarted := time.Now()
	nd := tc.start(down)
	// Serving means current: the records only grow, so a shortfall seen
	// after Serving was there when it served.
	waitFor(t, 8*time.Second, "serving", nd.Serving)
	if got, err := nd.Records(tc.peers[li].ID); err != nil || len(got) != len(want) {
		t.Fatalf("serving with %d of %d records (%v)", len(got), len(want), err)
	}
	t.Logf("restarted node serving and current after %v", time.Since(restarted))
	if nd.raft.Stats()["last_snapshot_index"] == "0" {
		t.Fatal("caught up without a snapshot")
	}
	got, _ := nd.Records(tc.peers[li].ID)
	slices.SortFunc(got, func(a, b ike.Record) int { return int(a.SPIi) - int(b.SPIi) })
	for i := range want {
		if !recordsEqual(got[i], want[i]) {
			t.Fatalf("record %d differs after catch-up", i)
		}
	}
	if v := nd.VIPs(); len(v) != 3 {
		t.Fatalf("VIPs after catch-up: %v", v)
	}
}

// TestTakeover: a node is closed, the leader or a follower; the (new)
// leader gives the dead node's VIP, and the SAs on it, to a survivor.
func TestTakeover(t *testing.T) {
	t.Run("leader", func(t *testing.T) { testTakeover(t, true) })
	t.Run("follower", func(t *testing.T) { testTakeover(t, false) })
}

func testTakeover(t *testing.T, killLeader bool) {
	tc := newTestCluster(t, 3)
	tc.startAll()
	li := tc.leader()
	if !killLeader {
		li = (li + 1) % 3
	}
	victim := tc.nodes[li]
	vid := tc.peers[li].ID
	vvip := tc.peers[li].VIPs[0].Addr()
	waitFor(t, 5*time.Second, "VIPs claimed", func() bool { return len(victim.VIPs()) == 3 })
	rec := testRecord(42, vvip)
	other := testRecord(43, netip.MustParseAddr("203.0.113.1")) // not on a VIP: stays
	if err := victim.ApplyRecords(context.Background(), []ike.Record{rec, other}); err != nil {
		t.Fatal(err)
	}
	var events []<-chan Event
	var survivors []*Node
	for i, nd := range tc.nodes {
		if i == li {
			continue
		}
		waitFor(t, 5*time.Second, "records", func() bool { got, _ := nd.Records(vid); return len(got) == 2 })
		ch, cancel := nd.Subscribe()
		t.Cleanup(cancel)
		events = append(events, ch)
		survivors = append(survivors, nd)
	}

	killed := time.Now()
	victim.Close()
	waitFor(t, 8*time.Second, "new leader", func() bool {
		l := survivors[0].Leader()
		return l != "" && l != vid && survivors[1].Leader() == l
	})
	t.Logf("new leader %s after %v", survivors[0].Leader(), time.Since(killed))
	var to string
	for i, ch := range events {
		timeout := time.After(8 * time.Second)
		for to == "" || i > 0 {
			select {
			case e := <-ch:
				if e.Kind == EventVIP && e.VIP == vvip && e.From == vid {
					if to != "" && e.To != to {
						t.Fatalf("nodes disagree: %s vs %s", to, e.To)
					}
					to = e.To
					t.Logf("%s learned takeover of %s by %s after %v", survivors[i].opts.Cluster.NodeID, vvip, to, time.Since(killed))
					goto next
				}
			case <-timeout:
				t.Fatalf("no takeover event on %s", survivors[i].opts.Cluster.NodeID)
			}
		}
	next:
	}
	if to == vid || to == "" {
		t.Fatalf("VIP given to %q", to)
	}
	for _, nd := range survivors {
		got, err := nd.Records(to)
		if err != nil || !slices.ContainsFunc(got, func(r ike.Record) bool { return recordsEqual(r, rec) }) {
			t.Fatalf("SA on the VIP did not move to %s: %v", to, err)
		}
		left, _ := nd.Records(vid)
		if len(left) != 1 || left[0].SPIi != other.SPIi {
			t.Fatalf("SA off the VIP: %d left with the dead node", len(left))
		}
	}
}

// TestQuorumLoss: the leader loses both followers and must stop serving,
// and it must not move their VIPs (it cannot commit).
func TestQuorumLoss(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.startAll()
	li := tc.leader()
	lonely := tc.nodes[li]
	waitFor(t, 5*time.Second, "VIPs claimed", func() bool { return len(lonely.VIPs()) == 3 })
	waitFor(t, 5*time.Second, "serving", lonely.Serving)
	ch, cancel := lonely.Subscribe()
	defer cancel()
	before := lonely.VIPs()
	cut := time.Now()
	for i, nd := range tc.nodes {
		if i != li {
			nd.Close()
		}
	}
	timeout := time.After(8 * time.Second)
	for {
		select {
		case e := <-ch:
			if e.Kind != EventServing {
				continue
			}
			if e.Serving {
				t.Fatal("serving again without a majority")
			}
			t.Logf("stopped serving %v after losing the majority", time.Since(cut))
			if lonely.Serving() {
				t.Fatal("Serving() disagrees with the event")
			}
			if got := lonely.VIPs(); !maps.Equal(got, before) {
				t.Fatalf("VIPs changed without a majority: %v", got)
			}
			return
		case <-timeout:
			t.Fatal("still serving without a majority")
		}
	}
}

// TestWitness: a witness votes without a key or VIPs and is never given a
// failed node's VIP; with it, two data nodes keep a majority.
func TestWitness(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.peers[2].Witness = true
	tc.peers[2].VIPs = nil
	tc.opts[2].Cluster.KeyFile = ""
	tc.startAll()
	li := tc.leader()
	w := tc.nodes[2]
	if err := w.ApplyRecords(context.Background(), []ike.Record{testRecord(1, vip1)}); err == nil {
		t.Fatal("witness applied records")
	}
	if _, err := w.Records("node1"); err == nil {
		t.Fatal("witness decrypted records")
	}
	waitFor(t, 5*time.Second, "VIPs claimed", func() bool { return len(w.VIPs()) == 2 })
	if st := w.Status(); !st.Witness || len(st.SAs) != 0 || len(st.VIPs) != 2 {
		t.Errorf("witness status %+v", st)
	}
	// Close the data node that is not the leader, or node1 if the witness
	// leads; the other data node must get the VIP.
	victim := 0
	if li == 0 {
		victim = 1
	}
	vip := tc.peers[victim].VIPs[0].Addr()
	heir := tc.peers[1-victim].ID
	tc.nodes[victim].Close()
	waitFor(t, 8*time.Second, "VIP to the surviving data node", func() bool {
		return w.VIPs()[vip] == heir && tc.nodes[1-victim].VIPs()[vip] == heir
	})
	if !w.Serving() || !tc.nodes[1-victim].Serving() {
		t.Fatal("the majority stopped serving")
	}
}

// TestPartition: a node, the leader or a follower, is cut off from the
// network but keeps running. It must stop serving before the majority
// gives its VIP to another node, so the VIP is never served twice.
func TestPartition(t *testing.T) {
	t.Run("leader", func(t *testing.T) { testPartition(t, true) })
	t.Run("follower", func(t *testing.T) { testPartition(t, false) })
}

func testPartition(t *testing.T, leader bool) {
	tc := newTestCluster(t, 3)
	tc.startAll()
	li := tc.leader()
	if !leader {
		li = (li + 1) % 3
	}
	iso := tc.nodes[li]
	vid, vvip := tc.peers[li].ID, tc.peers[li].VIPs[0].Addr()
	waitFor(t, 5*time.Second, "VIPs claimed", func() bool { return len(iso.VIPs()) == 3 })
	waitFor(t, 5*time.Second, "serving", iso.Serving)
	isoEv, cancel := iso.Subscribe()
	defer cancel()
	var majEv []<-chan Event
	for i, nd := range tc.nodes {
		if i != li {
			ch, cancel := nd.Subscribe()
			defer cancel()
			majEv = append(majEv, ch)
		}
	}
	cut := time.Now()
	iso.stream.cut.Store(true)

	stopped := make(chan time.Time, 1)
	go func() {
		for e := range isoEv {
			if e.Kind == EventServing && !e.Serving {
				stopped <- time.Now()
				return
			}
		}
	}()
	var movedAt time.Time
	timeout := time.After(8 * time.Second)
	for movedAt.IsZero() {
		select {
		case e := <-majEv[0]:
			if e.Kind == EventVIP && e.VIP == vvip && e.From == vid {
				movedAt = time.Now()
			}
		case <-timeout:
			t.Fatal("the majority did not take the VIP over")
		}
	}
	var stopAt time.Time
	select {
	case stopAt = <-stopped:
	case <-time.After(8 * time.Second):
		t.Fatal("isolated node never stopped serving")
	}
	if !stopAt.Before(movedAt) {
		t.Fatalf("VIP moved %v before the isolated node stopped serving", stopAt.Sub(movedAt))
	}
	t.Logf("isolated node stopped serving after %v, majority moved its VIP after %v", stopAt.Sub(cut), movedAt.Sub(cut))
	if iso.Serving() {
		t.Fatal("isolated node serving")
	}
	if got := iso.VIPs()[vvip]; got != vid {
		t.Fatalf("isolated node's map changed without a majority: %q", got)
	}
}

// TestLargeApply: one call larger than a raft entry may be is cut into
// several entries (and through forwarding, whose frames are bounded).
func TestLargeApply(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.startAll()
	li := tc.leader()
	f := tc.nodes[(li+1)%3]
	var recs []ike.Record
	size := 0
	// Not on a VIP: only a VIP's owner may write the SAs on it.
	local := netip.MustParseAddr("198.51.100.7")
	for i := 0; size <= maxEntry+maxEntry/2; i++ {
		r := testRecord(uint64(i+1), local)
		recs = append(recs, r)
		ops, _ := f.seal.seal([]ike.Record{r})
		size += opSize(&ops[0])
	}
	before, _ := strconv.Atoi(tc.nodes[li].raft.Stats()["last_log_index"])
	if err := f.ApplyRecords(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	after, _ := strconv.Atoi(tc.nodes[li].raft.Stats()["last_log_index"])
	if after-before < 2 {
		t.Fatalf("%d records (%d bytes) in %d entries", len(recs), size, after-before)
	}
	waitFor(t, 8*time.Second, "all records on the leader", func() bool {
		got, _ := tc.nodes[li].Records(f.opts.Cluster.NodeID)
		return len(got) == len(recs)
	})
}
