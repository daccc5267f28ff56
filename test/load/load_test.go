// Package load runs `hike load` against `hike serve` in network
// namespaces: the real binary on both ends, thousands of client addresses
// on one loopback.
//
// Prerequisites: root and iproute2. Without them the test skips, except
// under CI=true, where a missing prerequisite is a failure.
package load

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/loadgen"
	"github.com/hike-vpn/hike/internal/netlab"
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

// requireLab checks the prerequisites and builds hike, unless HIKE_BIN
// names a binary to use instead: a benchmark can then run a build of a
// known commit while the working tree changes.
func requireLab(t *testing.T) {
	t.Helper()
	labtest.Require(t, netlab.Check)
	if hikeBin = os.Getenv("HIKE_BIN"); hikeBin == "" {
		hikeBin = labtest.Hike(t)
	}
}

const (
	serverAddr = "10.99.0.1"
	clientAddr = "10.99.0.2"
	clientNet  = "10.201.0.0/16"
	vipNet     = "10.202.0.0/16"
	insideAddr = "10.97.0.1"
	psk        = "hike load integration test pre-shared key"
)

// hikeConf is a responder for any *.load client; its own DPD is slow so
// that the clients' probes are the only ones measured.
const hikeConf = `listen:
  addrs: [` + serverAddr + `]
control_socket: $DIR/control.sock
log:
  level: warn
# DoS protection off, as for the strongSwan responder of the benchmark:
# the clients are known, and cookies would add a round trip per setup.
limits:
  half_open_cookie_threshold: 1000000
pools:
  load:
    addrs: ` + vipNet + `
secrets:
  load:
    psk: "` + psk + `"
connections:
  - name: load
    local:
      id: gw.load
      auth: psk
    remote:
      addrs: any
      id: "*.load"
    psk: load
    pools: [load]
    dpd:
      delay: 600s
    children:
      - name: net
        local_ts: [10.97.0.0/16]
        remote_ts: dynamic
`

// bench is a server namespace running hike and a client namespace whose
// loopback holds clientNet, joined by a veth pair.
type bench struct {
	lab      *netlab.Lab
	srv, cli *netlab.NS
	dir      string
	hike     *netlab.Proc
	swan     *swan.Daemon
	// wrap runs before hike serve's own arguments, such as taskset.
	wrap []string
}

func newBench(t *testing.T) *bench {
	t.Helper()
	requireLab(t)
	lab, err := netlab.New(fmt.Sprintf("hl%d", os.Getpid()%1000))
	if err != nil {
		t.Fatal(err)
	}
	b := &bench{lab: lab, dir: t.TempDir()}
	t.Cleanup(func() {
		if t.Failed() && b.hike != nil {
			t.Logf("hike output:\n%s", tail(b.hike.Out.String(), 60))
		}
		if t.Failed() && b.swan != nil {
			t.Logf("charon log:\n%s", tail(b.swan.Log(), 60))
		}
		lab.Close()
	})
	if b.srv, err = lab.AddNS("s"); err != nil {
		t.Fatal(err)
	}
	if b.cli, err = lab.AddNS("c"); err != nil {
		t.Fatal(err)
	}
	must(t, lab.Veth(b.srv, "eth0", netip.MustParsePrefix(serverAddr+"/24"), b.cli, "eth0", netip.MustParsePrefix(clientAddr+"/24")))
	// On lo a prefix makes every address in it local: 65,534 client
	// addresses from one command.
	must(t, b.cli.AddAddr("lo", netip.MustParsePrefix(clientNet)))
	// The inside of the gateway, the responders' local selector: charon
	// routes Child SA traffic from an address of it.
	must(t, b.srv.AddAddr("lo", netip.MustParsePrefix(insideAddr+"/32")))
	if out, err := b.srv.Run("ip", "route", "add", clientNet, "via", clientAddr); err != nil {
		t.Fatalf("route: %v: %s", err, out)
	}
	return b
}

// startHike runs `hike serve` in the server namespace.
func (b *bench) startHike(t *testing.T) {
	t.Helper()
	var err error
	path := filepath.Join(b.dir, "hike.yaml")
	must(t, os.WriteFile(path, []byte(strings.ReplaceAll(hikeConf, "$DIR", b.dir)), 0o600))
	// ip netns exec, env and taskset each exec the next: the PID is hike's.
	args := append(append([]string{}, b.wrap...), hikeBin, "serve", "-c", path)
	if b.hike, err = b.srv.Start("hike", filepath.Join(b.dir, "hike.log"), args...); err != nil {
		t.Fatal(err)
	}
	// Ready when the control socket answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := b.srv.Run(hikeBin, "sa", "list", "--json", "--socket", filepath.Join(b.dir, "control.sock")); err == nil {
			break
		}
		if b.hike.Exited() || time.Now().After(deadline) {
			t.Fatalf("hike did not start:\n%s", b.hike.Out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// load runs `hike load` in the client namespace and decodes its summary.
func (b *bench) load(t *testing.T, args ...string) loadgen.Summary {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", b.cli.Name, hikeBin, "load", "--json",
		"--target", serverAddr, "--psk-env", "HIKE_LOAD_PSK", "--sources", clientNet}, args...)...)
	cmd.Env = append(os.Environ(), "HIKE_LOAD_PSK="+psk)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("hike load: %v\n%s", err, stderr.String())
	}
	var s loadgen.Summary
	if err := json.Unmarshal(stdout.Bytes(), &s); err != nil {
		t.Fatalf("hike load --json: %v: %s", err, stdout.String())
	}
	return s
}

func (b *bench) hikeSAs(t *testing.T) int {
	t.Helper()
	out, err := b.srv.Run(hikeBin, "sa", "list", "--json", "--socket", filepath.Join(b.dir, "control.sock"))
	if err != nil {
		t.Fatalf("hike sa list: %v: %s", err, out)
	}
	var sas []json.RawMessage
	if err := json.Unmarshal(out, &sas); err != nil {
		t.Fatalf("hike sa list --json: %v", err)
	}
	return len(sas)
}

// TestLoadAgainstHike: 500 clients from 500 addresses at 200/s, with Child
// SAs and DPD every 2 s, against one hike responder: every client gets its
// SA, hike holds all 500, DPD flows at the rate the delay implies, and
// nothing fails or times out.
func TestLoadAgainstHike(t *testing.T) {
	b := newBench(t)
	b.startHike(t)
	const clients = 500
	s := b.load(t, "--clients", fmt.Sprint(clients), "--rate", "200/s", "--dpd", "2", "--child", "--duration", "9s",
		"--watch-pid", fmt.Sprint(b.hike.Cmd.Process.Pid))
	t.Logf("setup %.0f/s p50 %.2f ms p99 %.2f ms; DPD %.0f/s over %.1fs, rtt p50 %.2f ms p99 %.2f ms; cpu %+v",
		s.SetupRate, s.SetupLatency.P50, s.SetupLatency.P99, s.DPD.PerSecond, s.DPD.Window, s.DPD.RTT.P50, s.DPD.RTT.P99, s.CPU)
	if s.Established != clients || s.Failed != 0 || s.Pending != 0 || s.UpAtEnd != clients || len(s.Failures) != 0 {
		t.Fatalf("established %d, failed %d %v, pending %d, up at end %d; want all %d up",
			s.Established, s.Failed, s.Failures, s.Pending, s.UpAtEnd, clients)
	}
	if s.SourceAddrs != clients {
		t.Fatalf("%d source addresses, want one per client", s.SourceAddrs)
	}
	if n := b.hikeSAs(t); n != clients {
		t.Fatalf("hike lists %d IKE SAs, want %d", n, clients)
	}
	// The ramp takes 2.5 s and the steady window starts one DPD delay
	// later; in it 500 SAs probing every 2 s (plus the timer wheel's 50 ms)
	// make ~245 DPD exchanges a second.
	if s.DPD.Timeouts != 0 || s.DPD.Failed != 0 || s.DPD.Completed < clients || s.DPD.PerSecond < 100 || s.DPD.PerSecond > 300 {
		t.Fatalf("DPD %+v: want ~250/s without timeouts", s.DPD)
	}
	if s.SetupRate > 210 || s.SetupRate < 100 {
		t.Fatalf("setup rate %v at a 200/s ramp", s.SetupRate)
	}
	if len(s.CPU) != 2 || s.CPU[1].Err != "" || s.CPU[1].Seconds <= 0 {
		t.Fatalf("CPU of hike serve not measured: %+v", s.CPU)
	}
	// The control socket serves the runtime's profiles, which the
	// benchmarks read: the heap profile's text form ends with MemStats.
	if ms := memStats(b.pprofGet(t, "/debug/pprof/heap?debug=1", 10*time.Second)); ms["HeapInuse"] == 0 || ms["NumGC"] == 0 {
		t.Fatalf("heap profile from the control socket lacks runtime.MemStats: %v", ms)
	}
}

// TestLoadAgainstStrongSwan: the same clients against a strongSwan
// responder with kernel-libipsec, which fakes a NAT so that every SA moves
// to port 4500 after IKE_SA_INIT, with virtual IPs as the clients'
// selectors: all establish with their Child SA and DPD flows.
func TestLoadAgainstStrongSwan(t *testing.T) {
	labtest.Require(t, swan.Check)
	b := newBench(t)
	b.startSwan(t, true)
	const clients = 200
	s := b.load(t, "--clients", fmt.Sprint(clients), "--rate", "200/s", "--dpd", "1", "--child", "--vip", "--duration", "5s")
	if s.Established != clients || s.Failed != 0 || s.Pending != 0 || s.UpAtEnd != clients {
		t.Fatalf("established %d, failed %d %v, pending %d, up at end %d; want all %d up",
			s.Established, s.Failed, s.Failures, s.Pending, s.UpAtEnd, clients)
	}
	sas, err := b.swan.SAs()
	if err != nil {
		t.Fatal(err)
	}
	children := 0
	for _, sa := range sas {
		if sa.State == "ESTABLISHED" && sa.RemotePort == "4500" {
			children += len(sa.Children)
		}
	}
	if len(sas) != clients || children != clients {
		t.Fatalf("strongSwan lists %d IKE SAs with %d Child SAs on port 4500, want %d each; first %+v", len(sas), children, clients, sas[0])
	}
	if s.DPD.Timeouts != 0 || s.DPD.Completed < clients {
		t.Fatalf("DPD %+v", s.DPD)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
