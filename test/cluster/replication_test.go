package cluster

import (
	"fmt"
	"testing"
	"time"
)

// replWindow is the steady period whose replication is counted.
const replWindow = 12 * time.Second

// TestReplicationTraffic counts what raft carries during steady DPD. With
// RFC 6311 peers a DPD exchange changes nothing a successor needs (it
// resynchronises the Message IDs), so there must be no SA put at all. With
// peers without RFC 6311 every exchange moves a Message ID the successor
// must know: about one put per exchange, coalesced per SA and 100 ms into
// fewer raft entries.
func TestReplicationTraffic(t *testing.T) {
	e := newCluster(t)
	const perVIP, dpd = 10, 2 * time.Second
	for k := 1; k <= nodes; k++ {
		if _, err := e.addLoad(k, vipOf(k), perVIP, true, fmt.Sprint(dpd.Seconds())); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.waitListed(30*time.Second, nodes*perVIP); err != nil {
		t.Fatal(err)
	}
	// Let the establishments' records be committed before counting.
	time.Sleep(2 * time.Second)
	d, x := e.steady(t, false)
	t.Logf("RFC 6311 peers (%d SAs, DPD every %v): in %v %d DPD exchanges; raft: %d entries, %d SA puts, %d deletes, %d entry bytes; transport tx %d rx %d bytes (all nodes)",
		nodes*perVIP, dpd, replWindow, x, d.Entries, d.SAPuts, d.SADeletes, d.EntryBytes, d.TxBytes, d.RxBytes)
	if x < uint64(nodes*perVIP)*uint64(replWindow/dpd)/2 {
		t.Errorf("only %d DPD exchanges in %v: the clients did not probe", x, replWindow)
	}
	if d.SAPuts != 0 || d.SADeletes != 0 {
		t.Errorf("steady DPD with RFC 6311 peers replicated %d SA puts and %d deletes; want none", d.SAPuts, d.SADeletes)
	}

	for k := nodes + 1; k <= 2*nodes; k++ {
		if _, err := e.addLoad(k, vipOf(k-nodes), perVIP, false, fmt.Sprint(dpd.Seconds())); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.waitListed(30*time.Second, 2*nodes*perVIP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	d, x = e.steady(t, true)
	t.Logf("peers without RFC 6311 (%d SAs, DPD every %v): in %v %d DPD exchanges; raft: %d entries, %d SA puts, %d Message ID updates (%.2f per exchange), %d entry bytes (%.0f per update); transport tx %d rx %d bytes (all nodes)",
		nodes*perVIP, dpd, replWindow, x, d.Entries, d.SAPuts, d.SAMIDs, float64(d.SAMIDs)/float64(max(x, 1)), d.EntryBytes,
		float64(d.EntryBytes)/float64(max(d.SAMIDs, 1)), d.TxBytes, d.RxBytes)
	switch {
	case x < uint64(nodes*perVIP)*uint64(replWindow/dpd)/2:
		t.Errorf("only %d DPD exchanges in %v: the clients did not probe", x, replWindow)
	// Each exchange is a Message ID update unless two of one SA fall into
	// one 100 ms flush; the window's edges may split one either way. A
	// DPD changes nothing else, so no whole record goes.
	case float64(d.SAMIDs) < 0.8*float64(x) || d.SAMIDs > x+uint64(nodes*perVIP):
		t.Errorf("%d Message ID updates for %d exchanges of SAs without RFC 6311; want about one each", d.SAMIDs, x)
	case d.SAPuts != 0:
		t.Errorf("%d whole records for DPD alone", d.SAPuts)
	case d.Entries > d.SAMIDs:
		t.Errorf("%d raft entries for %d updates: not coalesced", d.Entries, d.SAMIDs)
	case d.EntryBytes > 64*d.SAMIDs+64*d.Entries:
		t.Errorf("%d entry bytes for %d Message ID updates in %d entries: not compact", d.EntryBytes, d.SAMIDs, d.Entries)
	}
}

// steady waits replWindow and returns the leader's replication counters
// over it (transport bytes summed over all nodes) and the number of IKE
// exchanges the nodes answered on SAs with (rfc6311 false) or without
// RFC 6311, from their next expected Message IDs.
func (e *env) steady(t *testing.T, without bool) (replication, uint64) {
	t.Helper()
	snap := func() (replication, map[saKey]uint32) {
		var r replication
		var leader replication
		for i := 1; i <= nodes; i++ {
			s, err := e.status(i)
			if err != nil {
				t.Fatal(err)
			}
			r.TxBytes += s.Replication.TxBytes
			r.RxBytes += s.Replication.RxBytes
			if s.Leader == nodeID(i) {
				leader = s.Replication
			}
		}
		leader.TxBytes, leader.RxBytes = r.TxBytes, r.RxBytes
		mids := map[saKey]uint32{}
		for i := 1; i <= nodes; i++ {
			sas, err := e.saList(i)
			if err != nil {
				t.Fatal(err)
			}
			for _, sa := range sas {
				if sa.Extensions.MIDSync != without {
					mids[saKey{sa.SPIi, sa.SPIr}] = sa.NextRecvMID + sa.NextSendMID
				}
			}
		}
		return leader, mids
	}
	r0, m0 := snap()
	time.Sleep(replWindow)
	r1, m1 := snap()
	var x uint64
	for k, m := range m1 {
		x += uint64(m - m0[k])
	}
	return r1.sub(r0), x
}
