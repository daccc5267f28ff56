// Package interop runs hike against real strongSwan 5.9.8 peers in network
// namespaces: the real binary, real sockets, real TUN devices, real charons.
//
// Prerequisites: root, iproute2, strongSwan (charon, swanctl, kernel-libipsec,
// the standard plugins). Without them the tests skip, except under CI=true,
// where a missing prerequisite is a failure: CI must never pass by skipping.
package interop

import (
	"os"
	"testing"

	"github.com/hike-vpn/hike/internal/netlab/labtest"
	"github.com/hike-vpn/hike/internal/netlab/swan"
)

// hikeBin is the hike binary under test, built by the first requireLab.
var hikeBin string

func TestMain(m *testing.M) {
	code := m.Run()
	labtest.Cleanup()
	os.Exit(code)
}

// requireLab skips (or, under CI, fails) when strongSwan peers cannot run,
// and builds hike.
func requireLab(t *testing.T) {
	t.Helper()
	labtest.Require(t, swan.Check)
	hikeBin = labtest.Hike(t)
}
