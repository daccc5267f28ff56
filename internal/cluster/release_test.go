package cluster

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// TestHandbackReleasesFirst: a handback from a running holder passes
// through the releasing owner; the holder's Release hook runs while no
// node owns the VIP, and the home node owns it only afterwards.
func TestHandbackReleasesFirst(t *testing.T) {
	tc := newTestCluster(t, 3)
	var (
		mu    sync.Mutex
		calls []string
		bad   []string
	)
	for i := range tc.opts {
		id := tc.peers[i].ID
		tc.opts[i].Release = func(vip netip.Addr) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, id+" "+vip.String())
			for _, n := range tc.nodes {
				if o := n.VIPs()[vip]; o == "node1" {
					bad = append(bad, "node1 owned "+vip.String()+" while "+id+" was still releasing it")
				}
			}
			time.Sleep(100 * time.Millisecond) // a slow data plane
		}
	}
	tc.startAll()
	vip := tc.peers[0].VIPs[0].Addr()
	n2 := tc.nodes[1]
	waitFor(t, 5*time.Second, "VIPs claimed", func() bool { return len(n2.VIPs()) == 3 && n2.Serving() })
	// As after a takeover: node2 serves node1's VIP.
	if err := n2.SetVIPOwner(context.Background(), vip, "node1", "node2"); err != nil {
		t.Fatal(err)
	}
	moved, err := tc.nodes[2].Handback(context.Background(), "node1")
	if err != nil || moved != 1 {
		t.Fatalf("handback: %d %v", moved, err)
	}
	waitFor(t, 5*time.Second, "VIP home", func() bool {
		for _, n := range tc.nodes {
			if n.VIPs()[vip] != "node1" {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 1 || calls[0] != "node2 "+vip.String() || len(bad) > 0 {
		t.Fatalf("release hooks: %v; %v", calls, bad)
	}
}

func TestReleasingOwner(t *testing.T) {
	from, to, ok := Releasing(releasing("node2", "node1"))
	if !ok || from != "node2" || to != "node1" {
		t.Fatalf("%q %q %v", from, to, ok)
	}
	if _, _, ok := Releasing("node2"); ok {
		t.Fatal("a plain owner reads as releasing")
	}
	if holder(releasing("a", "b")) != "a" || holder("c") != "c" {
		t.Fatal("holder")
	}
}
