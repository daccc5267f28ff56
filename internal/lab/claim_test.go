package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// deadPID returns the ID of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	return cmd.Process.Pid
}

func TestSweep(t *testing.T) {
	claimDir = t.TempDir()
	t.Cleanup(func() { claimDir = "/run/hike-lab" })
	dead, err := os.MkdirTemp("", "hike-lab-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dead)
	elsewhere := t.TempDir() // not a lab directory: must survive a damaged record
	for name, body := range map[string]string{
		"hkx001": fmt.Sprintf("%d %s\n", deadPID(t), dead),
		"hkx002": fmt.Sprintf("%d %s\n", os.Getpid(), "/tmp/hike-lab-live"),
		"hkx003": "garbage",
		"hkx004": fmt.Sprintf("%d %s\n", deadPID(t), elsewhere),
	} {
		if err := os.WriteFile(filepath.Join(claimDir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	swept := strings.Join(sweep(), " ")
	if swept != "hkx001 hkx003 hkx004" {
		t.Errorf("swept %q, want the dead and the unreadable owners", swept)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("a dead lab's directory survived: %v", err)
	}
	if _, err := os.Stat(elsewhere); err != nil {
		t.Errorf("a directory that is not a lab's was removed: %v", err)
	}
	left, _ := os.ReadDir(claimDir)
	if len(left) != 1 || left[0].Name() != "hkx002" {
		t.Errorf("records left %v, want only the live one", left)
	}
	if err := claim("hkx002", "/tmp/hike-lab-x"); err != nil {
		t.Errorf("our own prefix refused: %v", err)
	}
}

func TestClaimRefusesLiveOwner(t *testing.T) {
	claimDir = t.TempDir()
	t.Cleanup(func() { claimDir = "/run/hike-lab" })
	// The parent of this test is alive and is not us.
	if err := os.WriteFile(filepath.Join(claimDir, "hkx005"), fmt.Appendf(nil, "%d /tmp/hike-lab-y\n", os.Getppid()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := claim("hkx005", "/tmp/hike-lab-z"); err == nil {
		t.Fatal("took over the prefix of a running lab")
	}
	if err := claim("hkx006", "/tmp/hike-lab-z"); err != nil {
		t.Fatal(err)
	}
	release("hkx006")
	if _, err := os.Stat(filepath.Join(claimDir, "hkx006")); !os.IsNotExist(err) {
		t.Fatalf("release left the record: %v", err)
	}
}
