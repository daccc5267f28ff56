package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// A lab killed outright (SIGKILL, a crash, a power cut) cannot clean up:
// its processes die with it, but namespaces and files stay. Each running lab
// therefore records its prefix, process ID and directory under claimDir,
// and every lab that starts removes what dead owners left.
var claimDir = "/run/hike-lab"

// claim records that this process owns the namespaces with prefix and dir.
// It refuses a prefix that a running lab holds: creating the namespaces
// would replace that lab's.
func claim(prefix, dir string) error {
	if err := os.MkdirAll(claimDir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(claimDir, prefix)
	if b, err := os.ReadFile(path); err == nil {
		if pid, _, ok := parseClaim(string(b)); ok && pid != os.Getpid() && alive(pid) {
			return fmt.Errorf("lab: process %d runs a lab with prefix %s", pid, prefix)
		}
	}
	return os.WriteFile(path, fmt.Appendf(nil, "%d %s\n", os.Getpid(), dir), 0o600)
}

func release(prefix string) { os.Remove(filepath.Join(claimDir, prefix)) }

// sweep removes the namespaces and directories of labs whose owner is gone
// and returns their prefixes.
func sweep() []string {
	entries, err := os.ReadDir(claimDir)
	if err != nil {
		return nil
	}
	var swept []string
	for _, ent := range entries {
		path := filepath.Join(claimDir, ent.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		pid, dir, ok := parseClaim(string(b))
		if ok && alive(pid) {
			continue
		}
		prefix := ent.Name()
		if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
			for _, ns := range labNamespaces(string(out), prefix) {
				// The dead owner's daemons die with it (parent-death
				// signal); anything else still inside goes now.
				if pids, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
					for _, f := range strings.Fields(string(pids)) {
						if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
							syscall.Kill(pid, syscall.SIGKILL)
						}
					}
				}
				exec.Command("ip", "netns", "del", ns).Run()
			}
		}
		// Only a directory the lab made itself, never what a damaged
		// record might name.
		if ok && strings.HasPrefix(filepath.Base(dir), "hike-lab-") && filepath.Dir(dir) == filepath.Clean(os.TempDir()) {
			os.RemoveAll(dir)
		}
		os.Remove(path)
		swept = append(swept, prefix)
	}
	return swept
}

func parseClaim(s string) (pid int, dir string, ok bool) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, "", false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return 0, "", false
	}
	return pid, f[1], true
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
