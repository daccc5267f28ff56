// Package labtest holds what hike's real-path tests share: building the
// hike binary they run in namespaces, and the rule for missing
// prerequisites (skip on a developer's machine, fail under CI=true: CI must
// never pass by skipping).
package labtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	once sync.Once
	dir  string
	bin  string
	err  error
)

// Hike builds cmd/hike once per test binary and returns its path.
func Hike(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		if dir, err = os.MkdirTemp("", "hike-test-"); err != nil {
			return
		}
		bin = filepath.Join(dir, "hike")
		out, e := exec.Command("go", "build", "-o", bin, "github.com/hike-vpn/hike/cmd/hike").CombinedOutput()
		if e != nil {
			err = fmt.Errorf("building hike: %v\n%s", e, out)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// Cleanup removes the binary Hike built; call it from TestMain after m.Run.
func Cleanup() {
	if dir != "" {
		os.RemoveAll(dir)
	}
}

// Require skips t, or fails it under CI=true, when check reports a missing
// prerequisite.
func Require(t testing.TB, check func() error) {
	t.Helper()
	if e := check(); e != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("prerequisite missing under CI: %v", e)
		}
		t.Skipf("prerequisite missing: %v", e)
	}
}
