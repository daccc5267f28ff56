package lab_test

import (
	"bufio"
	"context"
	"encoding/json"
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

// These tests run the lab for real: root and iproute2, and strongSwan for
// the tunnel scenario. Without them they skip, except under CI=true, where
// a missing prerequisite fails.

// requireLab requires what the tunnel scenario needs.
func requireLab(t *testing.T) {
	t.Helper()
	labtest.Require(t, func() error { return lab.Check(lab.Options{Scenario: "tunnel"}) })
}

// requireFailover requires what the failover scenario needs with
// strongSwan clients or, if swan is 0, with simulated ones only.
func requireFailover(t *testing.T, swan int) {
	t.Helper()
	labtest.Require(t, func() error { return lab.Check(lab.Options{Scenario: "failover", StrongSwan: swan}) })
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
	r, err := lab.Run(ctx, lab.Options{Scenario: "tunnel", Clients: 2, Hike: hike(t), Prefix: prefix, Progress: &progress,
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
	p := startLab(t, "--scenario", "tunnel", "--keep")
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
	p := startLab(t, "--scenario", "tunnel", "--clients", "2", "--dpd", "20s")
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
// /usr/lib/ipsec in a private mount namespace) the tunnel scenario, and the
// failover scenario asked for strongSwan clients, touch nothing, name the
// packages to install and exit non-zero.
func TestMissingStrongSwan(t *testing.T) {
	requireLab(t)
	for _, args := range []string{"--scenario tunnel", "--strongswan 1"} {
		t.Run(args, func(t *testing.T) { missingStrongSwan(t, args) })
	}
}

func missingStrongSwan(t *testing.T, args string) {
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs none /usr/lib/ipsec && exec "$0" lab `+args, hike(t))
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
	p := startLab(t, "--scenario", "tunnel", "--keep")
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
	r, err := lab.Run(context.Background(), lab.Options{Scenario: "tunnel", Hike: hike(t), Prefix: "hkt3k", Pings: 1, DPD: 2 * time.Second, Progress: &progress})
	if err != nil {
		t.Fatalf("next lab: %v\n%s", err, progress.String())
	}
	if !r.OK || !strings.Contains(progress.String(), "removed what a killed lab left: namespaces "+prefix+"*") {
		t.Errorf("next lab did not report the sweep:\n%s", progress.String())
	}
	assertGone(t, prefix, dir)
}

// TestFailoverWithoutStrongSwan runs `hike lab`, the default failover
// scenario, as the README's command does, on a machine where strongSwan is
// hidden (an empty /usr/lib/ipsec in a private mount namespace): the
// cluster loses the node with the most SAs and every simulated client
// keeps its SA through the takeover and the RFC 6311 resync.
func TestFailoverWithoutStrongSwan(t *testing.T) {
	requireFailover(t, 0)
	dirsBefore := labDirs(t)
	t0 := time.Now()
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`if [ -d /usr/lib/ipsec ]; then mount -t tmpfs none /usr/lib/ipsec || exit 99; fi; exec "$0" lab --clients 90 --json`, hike(t))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Logf("hike lab took %v\n%s", time.Since(t0), stderr.String())
	var r lab.Report
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		t.Fatalf("report is not JSON (%v; exit %v):\n%s", jerr, err, out)
	}
	var text strings.Builder
	r.WriteText(&text)
	t.Logf("report:\n%s", text.String())
	if err != nil || !r.OK {
		t.Fatalf("exit %v, report ok %v: %s", err, r.OK, r.Error)
	}
	if r.Scenario != "failover" || r.Failover == nil {
		t.Fatalf("default scenario %q, failover section %v", r.Scenario, r.Failover != nil)
	}
	checkFailoverReport(t, &r, failover{clients: 90})
	m := regexp.MustCompile(`lab: namespaces (\S+)\*, files in (\S+)`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatal("the lab did not say where it worked")
	}
	assertGone(t, m[1], m[2])
	for d := range labDirs(t) {
		if !dirsBefore[d] {
			t.Errorf("temporary directory left behind: %s", d)
		}
	}
}

// failover is what a run was asked for.
type failover struct {
	clients   int  // simulated clients
	members   int  // voters: 3 unless said
	noRFC6311 bool // the simulated clients do not advertise it
}

// checkFailoverReport asserts what a failover run as want must show.
func checkFailoverReport(t *testing.T, r *lab.Report, want failover) {
	t.Helper()
	f := r.Failover
	clients := want.clients
	if want.members == 0 {
		want.members = 3
	}
	if len(f.Nodes) != want.members || f.LeaderBefore == "" {
		t.Errorf("members %v, leader %q: want %d and a leader", f.Nodes, f.LeaderBefore, want.members)
	}
	before := 0
	for _, n := range f.SAsBefore {
		before += n
	}
	if before != clients+len(r.Clients) {
		t.Errorf("SAs before the kill %v, want %d in all", f.SAsBefore, clients+len(r.Clients))
	}
	if f.Killed == "" || f.NewOwner == "" || f.NewOwner == f.Killed {
		t.Fatalf("killed %q, VIP taken over by %q", f.Killed, f.NewOwner)
	}
	for id, n := range f.SAsBefore {
		if n > f.SAsBefore[f.Killed] {
			t.Errorf("killed %s with %d SAs, %s had %d", f.Killed, f.SAsBefore[f.Killed], id, n)
		}
	}
	if f.KilledSAs != f.SAsBefore[f.Killed] || f.Restored != f.KilledSAs || f.Resynced != f.KilledSAsRFC6311 {
		t.Errorf("killed node's SAs %d (%d before), restored %d, resynced %d of %d with RFC 6311",
			f.KilledSAs, f.SAsBefore[f.Killed], f.Restored, f.Resynced, f.KilledSAsRFC6311)
	}
	// hike load advertises RFC 6311 unless told not to: every simulated
	// client's SA resyncs, or none.
	switch {
	case want.noRFC6311 && f.KilledSAsRFC6311 > len(r.Clients):
		t.Errorf("%d of the killed node's %d SAs negotiated RFC 6311, want only strongSwan's", f.KilledSAsRFC6311, f.KilledSAs)
	case !want.noRFC6311 && f.KilledSAsRFC6311 < f.KilledSAs-len(r.Clients):
		t.Errorf("%d of the killed node's %d SAs negotiated RFC 6311", f.KilledSAsRFC6311, f.KilledSAs)
	}
	if f.TakeoverMS <= 0 || f.TakeoverMS > 5000 || (f.KilledSAsRFC6311 > 0 && f.LastResyncMS < f.TakeoverMS) {
		t.Errorf("takeover after %d ms, last resync after %d ms", f.TakeoverMS, f.LastResyncMS)
	}
	after := 0
	for id, n := range f.SAsAfter {
		if id == f.Killed {
			t.Errorf("the killed node is listed after the kill")
		}
		after += n
	}
	if after != before {
		t.Errorf("survivors serve %v, %d before", f.SAsAfter, before)
	}
	var up, established, timeouts, resyncs int64
	for _, g := range f.Clients {
		up += g.UpAtEnd
		established += g.Established
		timeouts += int64(g.DPDTimeouts)
		resyncs += int64(g.ResyncsSeen)
	}
	if established != int64(clients) || up != int64(clients) || timeouts != 0 {
		t.Errorf("simulated clients: %d established, %d up at the end, %d DPD timeouts", established, up, timeouts)
	}
	switch {
	case want.noRFC6311 && resyncs != 0:
		t.Errorf("simulated clients without RFC 6311 answered %d resyncs", resyncs)
	case !want.noRFC6311 && resyncs < int64(f.KilledSAs-len(r.Clients)):
		t.Errorf("simulated clients answered %d resyncs; the killed node had %d of their SAs", resyncs, f.KilledSAs)
	}
	if f.Steady.PeriodMS <= 0 || f.Steady.NodeDPDSent == 0 {
		t.Errorf("steady period %+v: no DPD from the nodes", f.Steady)
	}
	if len(f.Problems) != 0 {
		t.Errorf("problems: %v", f.Problems)
	}
}

// TestRunFailoverStrongSwan adds strongSwan clients, which ping through
// their tunnels across the kill: each keeps its IKE SA with the same SPIs,
// and its traffic stops for less than 3 s.
func TestRunFailoverStrongSwan(t *testing.T) {
	requireFailover(t, 3)
	const prefix = "hktfs"
	t.Cleanup(func() {
		for _, ns := range namespaces(t, prefix) {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	var progress strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := lab.Run(ctx, lab.Options{Clients: 30, StrongSwan: 3, Hike: hike(t), Prefix: prefix, Progress: &progress})
	t.Logf("%s", progress.String())
	if r == nil {
		t.Fatalf("Run: %v", err)
	}
	var b strings.Builder
	r.WriteText(&b)
	t.Logf("report:\n%s", b.String())
	if err != nil || !r.OK {
		t.Fatalf("Run: %v", err)
	}
	checkFailoverReport(t, r, failover{clients: 30})
	if len(r.Clients) != 3 {
		t.Fatalf("%d strongSwan clients in the report, want 3", len(r.Clients))
	}
	for i, c := range r.Clients {
		if c.Kind != "strongswan" || c.VIP != r.Failover.Nodes[i%3].VIP || c.IKE.State != "ESTABLISHED" || !c.DPD.SameIKESA ||
			c.Ping.Sent < 50 || c.Ping.Received == 0 || c.Ping.LongestGapMS >= 3000 || c.DPD.Exchanges() == 0 || c.DPD.Unanswered > 0 {
			t.Errorf("strongSwan %s: %+v", c.Name, c)
		}
	}
	if nss := namespaces(t, prefix); len(nss) != 0 {
		t.Errorf("namespaces left behind: %v", nss)
	}
}

// TestInterruptFailover: SIGTERM while the cluster and its clients run
// tears everything down (nodes, hike load processes, namespaces, files)
// and exits non-zero.
func TestInterruptFailover(t *testing.T) {
	requireFailover(t, 0)
	p := startLab(t, "--clients", "30", "--kill-after", "30s")
	m := p.waitLine(t, setupLine, 30*time.Second)
	prefix, dir := m[1], m[2]
	p.waitLine(t, regexp.MustCompile(`^lab: clients +done`), 60*time.Second)
	if nss := namespaces(t, prefix); len(nss) != 7 {
		t.Errorf("lab up with namespaces %v, want the switch, 3 nodes and 3 groups of clients", nss)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	err := p.wait(t, 30*time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
		t.Errorf("interrupted lab: want a non-zero exit status, got %v", err)
	}
	if !strings.Contains(p.outText(), "result: INTERRUPTED") {
		t.Errorf("interruption not reported:\n%s", p.outText())
	}
	assertGone(t, prefix, dir)
	// hike serve and hike load ran in the namespaces; none may outlive
	// them.
	if pids := processesWith(t, dir); len(pids) > 0 {
		t.Errorf("processes of the lab still running: %v", pids)
	}
}

// processesWith lists the processes whose command line mentions s.
func processesWith(t *testing.T, s string) []string {
	t.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil || len(cmdlines) == 0 {
		t.Fatalf("cannot list processes: %v", err)
	}
	var pids []string
	for _, f := range cmdlines {
		b, err := os.ReadFile(f)
		if err == nil && strings.Contains(string(b), s) {
			pids = append(pids, filepath.Base(filepath.Dir(f))+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return pids
}

// TestRunFailoverVariants: a pair of nodes with a witness, and simulated
// clients without RFC 6311 (the cluster replicates their counters instead
// of resynchronising them), each keep every SA through the kill.
func TestRunFailoverVariants(t *testing.T) {
	requireFailover(t, 0)
	for _, tc := range []struct {
		name   string
		o      lab.Options
		want   failover
		prefix string
	}{
		{"witness", lab.Options{Witness: true, Clients: 40}, failover{clients: 40}, "hktfw"},
		{"no-rfc6311", lab.Options{NoRFC6311: true, Clients: 60}, failover{clients: 60, noRFC6311: true}, "hktfn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Cleanup(func() {
				for _, ns := range namespaces(t, tc.prefix) {
					exec.Command("ip", "netns", "del", ns).Run()
				}
			})
			var progress strings.Builder
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			o := tc.o
			o.Hike, o.Prefix, o.Progress = hike(t), tc.prefix, &progress
			r, err := lab.Run(ctx, o)
			t.Logf("%s", progress.String())
			if r == nil {
				t.Fatalf("Run: %v", err)
			}
			var b strings.Builder
			r.WriteText(&b)
			t.Logf("report:\n%s", b.String())
			if err != nil || !r.OK {
				t.Fatalf("Run: %v", err)
			}
			checkFailoverReport(t, r, tc.want)
			if nss := namespaces(t, tc.prefix); len(nss) != 0 {
				t.Errorf("namespaces left behind: %v", nss)
			}
		})
	}
}
