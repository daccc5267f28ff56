package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/ike"
)

// rogueJoin starts nodes 1 and 2 normally and node 3 with bad credentials,
// then checks that 1 and 2 form the cluster and replicate while node 3
// learns nothing, and that the good nodes refused its connections.
func rogueJoin(t *testing.T, tc *testCluster) {
	t.Helper()
	tc.start(0)
	tc.start(1)
	rogue := tc.start(2)
	li := tc.leader(0, 1)
	rec := testRecord(99, offVIP)
	if err := tc.nodes[li].ApplyRecords(context.Background(), []ike.Record{rec}); err != nil {
		t.Fatal(err)
	}
	other := tc.nodes[1-li]
	waitFor(t, 5*time.Second, "replication between the good nodes", func() bool {
		got, _ := other.Records(tc.peers[li].ID)
		return len(got) == 1
	})
	// Node 3 campaigns once its election timer runs out; its connections
	// must be refused.
	waitFor(t, 8*time.Second, "node 3's connections refused", func() bool {
		return tc.nodes[0].stream.rejct.Load()+tc.nodes[1].stream.rejct.Load() > 0
	})
	// The leader heartbeats every 30ms; in two seconds a member would have
	// learned leader and records many times over.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if l := rogue.Leader(); l != "" {
			t.Fatalf("rogue node learned leader %s", l)
		}
		if got, _ := rogue.Records(tc.peers[li].ID); len(got) != 0 {
			t.Fatal("rogue node received records")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := tc.nodes[li].Leader(); got != tc.peers[li].ID {
		t.Fatalf("leadership disturbed: %q", got)
	}
}

// TestRejectForeignCA: a node whose certificate comes from another CA
// cannot join.
func TestRejectForeignCA(t *testing.T) {
	tc := newTestCluster(t, 3)
	rogueCA := newCA(t, tc.dir, "rogue-ca")
	cert, key := rogueCA.issue(t, tc.dir, "rogue-node3", "node3", "node3")
	tc.opts[2].Cluster.TLS.CertFile, tc.opts[2].Cluster.TLS.KeyFile = cert, key
	rogueJoin(t, tc)
}

// TestRejectWrongName: a node holding a valid cluster certificate that
// names another node cannot join as the node it is configured to be; a
// node refuses to start with such a certificate.
func TestRejectWrongName(t *testing.T) {
	tc := newTestCluster(t, 3)
	cert, key := tc.ca.issue(t, tc.dir, "other-node2", "node2", "node2")
	tc.opts[2].Cluster.TLS.CertFile, tc.opts[2].Cluster.TLS.KeyFile = cert, key
	if _, err := New(tc.opts[2]); err == nil || !strings.Contains(err.Error(), `"node2"`) {
		t.Fatalf("New with node2's certificate as node3: %v", err)
	}
	tc.opts[2].skipSelfCheck = true
	rogueJoin(t, tc)
}

// TestDialChecksName: dialing a configured address whose certificate names
// a different node fails, even though the chain is valid.
func TestDialChecksName(t *testing.T) {
	tc := newTestCluster(t, 3)
	cert, key := tc.ca.issue(t, tc.dir, "other-node2", "node2", "node2")
	tc.opts[2].Cluster.TLS.CertFile, tc.opts[2].Cluster.TLS.KeyFile = cert, key
	tc.opts[2].skipSelfCheck = true
	tc.start(2)
	n1 := tc.start(0)
	_, _, err := n1.stream.dial(tc.peers[2].Address, 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), `expected node "node3"`) {
		t.Fatalf("dial to node3 holding node2's certificate: %v", err)
	}
	// The right name passes the same check.
	n2 := tc.start(1)
	_ = n2
	c, peer, err := n1.stream.dial(tc.peers[1].Address, 2*time.Second)
	if err != nil || peer != "node2" {
		t.Fatalf("dial to node2: %v", err)
	}
	c.Close()
}
