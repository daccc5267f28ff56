// Package cluster runs real 3-node hike clusters in network namespaces:
// the hike binary on every node, raft over TLS between them, VIPs on a
// shared bridge, real strongSwan 5.9.8 clients and hike's own simulated
// ones. It kills, partitions and restarts nodes and checks what the
// clients see.
//
// Prerequisites: root, iproute2, strongSwan (charon, swanctl,
// kernel-libipsec, the standard plugins). Without them the tests skip,
// except under CI=true, where a missing prerequisite is a failure.
package cluster

import (
	"os"
	"testing"

	"github.com/hike-vpn/hike/internal/netlab"
	"github.com/hike-vpn/hike/internal/netlab/labtest"
	"github.com/hike-vpn/hike/internal/netlab/swan"
)

// hikeBin is the hike binary under test, built by the first requireLab.
var hikeBin string

func TestMain(m *testing.M) {
	code := m.Run()
	closeShared()
	labtest.Cleanup()
	os.Exit(code)
}

// requireLab skips (or, under CI, fails) when namespaces cannot be built,
// and builds hike, unless HIKE_BIN names a binary to test instead (one
// built from a clean checkout while the working tree is mid-change).
func requireLab(t *testing.T) {
	t.Helper()
	labtest.Require(t, netlab.Check)
	if b := os.Getenv("HIKE_BIN"); b != "" {
		hikeBin = b
		return
	}
	hikeBin = labtest.Hike(t)
}

// requireSwan is requireLab for tests with strongSwan clients.
func requireSwan(t *testing.T) {
	t.Helper()
	labtest.Require(t, swan.Check)
	requireLab(t)
}
