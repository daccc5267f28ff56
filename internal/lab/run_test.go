package lab_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/lab"
	"github.com/hike-vpn/hike/internal/netlab/labtest"
)

// These tests run the lab for real: root, iproute2 and strongSwan. Without
// them they skip, except under CI=true, where a missing prerequisite fails.

func requireLab(t *testing.T) {
	t.Helper()
	labtest.Require(t, func() error { return lab.Check(lab.Options{}) })
}

// hike builds the hike binary once for the package's tests.
func hike(t *testing.T) string { return labtest.Hike(t) }

func TestMain(m *testing.M) {
	code := m.Run()
	labtest.Cleanup()
	os.Exit(code)
}

// namespaces lists the network namespaces whose names start with prefix.
func namespaces(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	var nss []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			nss = append(nss, f[0])
		}
	}
	return nss
}

// labDirs lists the lab's temporary directories.
func labDirs(t *testing.T) map[string]bool {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(os.TempDir(), "hike-lab-*"))
	set := map[string]bool{}
	for _, d := range m {
		set[d] = true
	}
	return set
}

// TestRunTwoClients runs the tunnel scenario with two clients through Run
// and checks its report and that nothing is left behind.
func TestRunTwoClients(t *testing.T) {
	requireLab(t)
	const prefix = "hkt2c"
	dirsBefore := labDirs(t)
	t.Cleanup(func() {
		// Only if Run itself failed to clean up: never leave a test's
		// namespaces behind.
		for _, ns := range namespaces(t, prefix) {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	var progress strings.Builder
	var up *lab.Report
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	r, err := lab.Run(ctx, lab.Options{Clients: 2, Hike: hike(t), Prefix: prefix, Progress: &progress,
		Up: func(r *lab.Report) {
			up = r
			if nss := namespaces(t, prefix); len(nss) != 3 {
				t.Errorf("while up: namespaces %v, want the gateway and two clients", nss)
			}
		}})
	t.Logf("lab took %v\n%s", time.Since(t0), progress.String())
	if r != nil {
		var b strings.Builder
		r.WriteText(&b)
		t.Logf("report:\n%s", b.String())
	}
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if up != r {
		t.Error("Up was not called with the report")
	}
	if !r.OK || r.Error != "" || len(r.Clients) != 2 {
		t.Fatalf("report: ok %v, error %q, %d clients", r.OK, r.Error, len(r.Clients))
	}
	if r.Gateway.IKESAs != 2 || r.Gateway.ChildSAs != 2 {
		t.Errorf("hike lists %d IKE SAs and %d Child SAs, want 2 and 2", r.Gateway.IKESAs, r.Gateway.ChildSAs)
	}
	spis := map[string]bool{}
	for _, c := range r.Clients {
		if !c.OK || c.IKE.State != "ESTABLISHED" || !c.IKE.OnGateway || c.Ping.Received != 5 || c.Child.PacketsIn < 5 ||
			c.DPD.Exchanges() == 0 || !c.DPD.SameIKESA || len(c.IKE.SPIi) != 16 || c.IKE.Proposal == "" {
			t.Errorf("client %s: %+v", c.Name, c)
		}
		spis[c.IKE.SPIi] = true
	}
	if len(spis) != 2 {
		t.Errorf("clients share an IKE SA: %v", spis)
	}
	if nss := namespaces(t, prefix); len(nss) != 0 {
		t.Errorf("namespaces left behind: %v", nss)
	}
	for d := range labDirs(t) {
		if !dirsBefore[d] {
			t.Errorf("temporary directory left behind: %s", d)
		}
	}
}

// labProc is `hike lab` running as a subprocess, its stderr read line by
// line.
type labProc struct {
	cmd    *exec.Cmd
	lines  chan string
	mu     sync.Mutex
	stdout strings.Builder
	stderr strings.Builder
}

// Write collects stdout.
func (p *labProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.Write(b)
}

func (p *labProc) outText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String()
}

func startLab(t *testing.T, args ...string) *labProc {
	t.Helper()
	p := &labProc{cmd: exec.Command(hike(t), append([]string{"lab"}, args...)...), lines: make(chan string, 100)}
	p.cmd.Stdout = p
	errPipe, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	go func() {
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	return p
}

// waitLine returns the first stderr line matching re, failing after timeout.
func (p *labProc) waitLine(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("hike lab ended before %v:\n%s", re, p.errText())
			}
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-deadline:
			t.Fatalf("no %v within %v:\n%s", re, timeout, p.errText())
		}
	}
}

func (p *labProc) errText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// wait reads stderr to its end, then reaps the process, at most timeout:
// reaping first could close the pipe before its last lines are read.
func (p *labProc) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case _, ok := <-p.lines:
			if ok {
				continue
			}
			return p.cmd.Wait()
		case <-deadline:
			t.Fatalf("hike lab did not end within %v of the signal:\n%s", timeout, p.errText())
			return nil
		}
	}
}

var (
	setupLine = regexp.MustCompile(`^lab: namespaces (\S+)\*, files in (\S+)$`)
	upLine    = regexp.MustCompile(`^lab is up`)
)

// TestInterruptKept: `hike lab --keep` holds the lab up after its report;
// SIGINT then tears it all down.
func TestInterruptKept(t *testing.T) {
	requireLab(t)
	p := startLab(t, "--keep")
	m := p.waitLine(t, setupLine, 30*time.Second)
	prefix, dir := m[1], m[2]
	p.waitLine(t, upLine, 60*time.Second)
	if nss := namespaces(t, prefix); len(nss) != 2 {
		t.Fatalf("lab up with namespaces %v, want the gateway and one client", nss)
	}
	if _, err := os.Stat(filepath.Join(dir, "control.sock")); err != nil {
		t.Fatalf("lab up without hike's control socket: %v", err)
	}
	// The report is written before the lab says it is up, but reaches
	// us through a pipe of its own.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(p.outText(), "result: OK"); {
		if time.Now().After(deadline) {
			t.Fatalf("report before the wait does not say OK:\n%s", p.outText())
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	if err := p.wait(t, 30*time.Second); err != nil {
		t.Errorf("Ctrl-C ends a kept lab that worked: want exit 0, got %v\n%s", err, p.errText())
	}
	assertGone(t, prefix, dir)
}

// TestInterruptRunning: SIGTERM in the middle of the scenario tears the lab
// down and exits non-zero.
func TestInterruptRunning(t *testing.T) {
	requireLab(t)
	p := startLab(t, "--clients", "2", "--dpd", "20s")
	m := p.waitLine(t, setupLine, 30*time.Second)
	prefix, dir := m[1], m[2]
	p.waitLine(t, regexp.MustCompile(`^lab: ping +done`), 60*time.Second)
	p.cmd.Process.Signal(syscall.SIGTERM)
	err := p.wait(t, 30*time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
		t.Errorf("interrupted lab: want a non-zero exit status, got %v", err)
	}
	if !strings.Contains(p.errText(), "lab interrupted") || !strings.Contains(p.outText(), "result: INTERRUPTED") {
		t.Errorf("interruption not reported:\nstdout:\n%s\nstderr:\n%s", p.outText(), p.errText())
	}
	assertGone(t, prefix, dir)
}

func assertGone(t *testing.T, prefix, dir string) {
	t.Helper()
	if nss := namespaces(t, prefix); len(nss) != 0 {
		t.Errorf("namespaces left behind: %v", nss)
		for _, ns := range nss {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary directory %s left behind (%v)", dir, err)
		os.RemoveAll(dir)
	}
}

// TestMissingStrongSwan: without strongSwan (hidden here by an empty
// /usr/lib/ipsec in a private mount namespace) the lab touches nothing,
// names the packages to install and exits non-zero.
func TestMissingStrongSwan(t *testing.T) {
	requireLab(t)
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs none /usr/lib/ipsec && exec "$0" lab`, hike(t))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
		t.Fatalf("want a non-zero exit status, got %v:\n%s", err, out)
	}
	want := "apt-get install strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins libstrongswan-extra-plugins"
	if !strings.Contains(string(out), want) || strings.Contains(string(out), "lab: namespaces") {
		t.Fatalf("want only the install hint %q, got:\n%s", want, out)
	}
}

// TestKilledLabSwept: a lab killed outright leaves its namespaces; the next
// lab removes them before it starts.
func TestKilledLabSwept(t *testing.T) {
	requireLab(t)
	p := startLab(t, "--keep")
	m := p.waitLine(t, setupLine, 30*time.Second)
	prefix, dir := m[1], m[2]
	p.waitLine(t, upLine, 60*time.Second)
	p.cmd.Process.Kill()
	p.wait(t, 10*time.Second)
	t.Cleanup(func() { assertGone(t, prefix, dir) })
	if nss := namespaces(t, prefix); len(nss) == 0 {
		t.Fatal("a killed lab left nothing: this test shows nothing")
	}
	var progress strings.Builder
	r, err := lab.Run(context.Background(), lab.Options{Hike: hike(t), Prefix: "hkt3k", Pings: 1, DPD: 2 * time.Second, Progress: &progress})
	if err != nil {
		t.Fatalf("next lab: %v\n%s", err, progress.String())
	}
	if !r.OK || !strings.Contains(progress.String(), "removed what a killed lab left: namespaces "+prefix+"*") {
		t.Errorf("next lab did not report the sweep:\n%s", progress.String())
	}
	assertGone(t, prefix, dir)
}
