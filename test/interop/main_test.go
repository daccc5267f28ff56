// Package interop runs hike against real strongSwan 5.9.8 peers in network
// namespaces: the real binary, real sockets, real TUN devices, real charons.
//
// Prerequisites: root, iproute2, strongSwan (charon, swanctl, kernel-libipsec,
// the standard plugins). Without them the tests skip, except under CI=true,
// where a missing prerequisite is a failure: CI must never pass by skipping.
package interop

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hike-vpn/hike/internal/netlab/swan"
)

var hikeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hike-interop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hikeBin = filepath.Join(dir, "hike")
	build := exec.Command("go", "build", "-o", hikeBin, "github.com/hike-vpn/hike/cmd/hike")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building hike:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireLab skips (or, under CI, fails) when strongSwan peers cannot run.
func requireLab(t *testing.T) {
	t.Helper()
	if err := swan.Check(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("prerequisite missing under CI: %v", err)
		}
		t.Skipf("prerequisite missing: %v", err)
	}
}
