package load

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/loadgen"
	"github.com/hike-vpn/hike/internal/netlab"
	"github.com/hike-vpn/hike/internal/netlab/swan"
)

// TestBenchResponders measures hike serve and a strongSwan 5.9.8 responder
// with the same `hike load` run, one after the other in one invocation:
//
//	HIKE_BENCH=1 go test ./test/load -run BenchResponders -v -timeout 30m
//
// HIKE_BENCH_CLIENTS (5000; a comma-separated list such as 10000,60000
// runs every size against every responder, each freshly started),
// HIKE_BENCH_RATE (2000/s), HIKE_BENCH_DPD (1), HIKE_BENCH_DURATION (30s),
// HIKE_BENCH_CHILD (false), HIKE_BENCH_INFLIGHT (no bound) and
// HIKE_BENCH_PEERS (hike,strongswan) adjust it; HIKE_BENCH_PPROF=DIR saves
// hike's heap profile after each run there (see pprof.go), and
// HIKE_BENCH_HIKE_ENV (e.g. GOGC=50) sets hike serve's environment, to see
// how much of its RSS is the Go heap's headroom. It reports, it asserts
// nothing but that the runs happened.
func TestBenchResponders(t *testing.T) {
	if os.Getenv("HIKE_BENCH") == "" {
		t.Skip("a benchmark: set HIKE_BENCH=1")
	}
	args := []string{"--rate", env("HIKE_BENCH_RATE", "2000/s"),
		"--dpd", env("HIKE_BENCH_DPD", "1"), "--duration", env("HIKE_BENCH_DURATION", "30s")}
	if m := env("HIKE_BENCH_INFLIGHT", ""); m != "" {
		args = append(args, "--max-inflight", m)
	}
	child := env("HIKE_BENCH_CHILD", "false") == "true"
	if child {
		// Virtual IPs as the clients' selectors, as remote-access
		// clients have them.
		args = append(args, "--child", "--vip")
	}
	profDir := os.Getenv("HIKE_BENCH_PPROF")
	var rows []string
	for _, clients := range strings.Split(env("HIKE_BENCH_CLIENTS", "5000"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(clients))
		if err != nil || n < 1 {
			t.Fatalf("HIKE_BENCH_CLIENTS: %q is not a number of clients", clients)
		}
		for _, peer := range strings.Split(env("HIKE_BENCH_PEERS", "hike,strongswan"), ",") {
			b := newBench(t)
			var pid int
			switch peer {
			case "hike":
				if e := strings.Fields(os.Getenv("HIKE_BENCH_HIKE_ENV")); len(e) > 0 {
					b.wrap = append([]string{"env"}, e...)
				}
				b.startHike(t)
				pid = b.hike.Cmd.Process.Pid
			case "strongswan":
				pid = b.startSwan(t, child)
			default:
				t.Fatalf("HIKE_BENCH_PEERS: unknown peer %q (hike, strongswan)", peer)
			}
			time.Sleep(500 * time.Millisecond) // let the responder finish starting
			load0 := loadAvg(t)
			rss0 := rssKiB(t, pid)
			buf0 := udpRcvbufErrors(t, b)
			s := b.load(t, append(args, "--clients", strconv.Itoa(n), "--watch-pid", strconv.Itoa(pid))...)
			rss1 := rssKiB(t, pid)
			rows = append(rows, row(peer, child, s, n, rss0, rss1)+fmt.Sprintf(" %.2f / %.2f |", load0, loadAvg(t)))
			if b.swan != nil && swanLogLevel() >= 0 {
				t.Logf("charon log:\n%s", tail(b.swan.Log(), 80))
			}
			t.Logf("%s, %d clients: setups ended at %.1fs, DPD window %.1fs of %.1fs, DPD %d sent %d completed; retransmits %d, client drops %+v, responder namespace UDP receive buffer overflows %d, failures %v; responder VmRSS %d -> %d KiB",
				peer, n, s.SetupElapsed, s.DPD.Window, s.Elapsed, s.DPD.Sent, s.DPD.Completed, s.Retransmits, s.Drops, udpRcvbufErrors(t, b)-buf0, s.Failures, rss0, rss1)
			if peer == "hike" && profDir != "" {
				b.heapProfile(t, profDir, n, s.UpAtEnd)
			}
			b.lab.Close()
		}
	}
	t.Logf("\n| responder | child SA | clients | established | failed | setup rate /s | setup p50 / p99 ms | responder CPU per setup ms | DPD /s | DPD RTT p50 / p99 ms | DPD timeouts | responder CPU per DPD µs | responder CPU during DPD | load CPU during setup / DPD | responder RSS per IKE SA KiB | load average before / after |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n%s",
		strings.Join(rows, "\n"))
}

func row(peer string, child bool, s loadgen.Summary, n int, rss0, rss1 int) string {
	var self, resp loadgen.CPUUsage
	if len(s.CPU) == 2 {
		self, resp = s.CPU[0], s.CPU[1]
	}
	perSetup, perDPD := 0.0, 0.0
	if s.Established > 0 {
		perSetup = resp.SetupSeconds * 1000 / float64(s.Established)
	}
	if s.DPD.AfterSetup > 0 {
		perDPD = resp.SteadySeconds * 1e6 / float64(s.DPD.AfterSetup)
	}
	return fmt.Sprintf("| %s | %v | %d | %d | %d | %.0f | %.1f / %.1f | %.2f | %.0f | %.2f / %.2f | %d | %.0f | %.0f%% | %.0f%% / %.0f%% | %.1f |",
		peer, child, n, s.Established, s.Failed, s.SetupRate, s.SetupLatency.P50, s.SetupLatency.P99, perSetup,
		s.DPD.PerSecond, s.DPD.RTT.P50, s.DPD.RTT.P99, s.DPD.Timeouts, perDPD, resp.SteadyPercent,
		100*self.SetupSeconds/max(s.SetupElapsed, 0.001), self.SteadyPercent, float64(rss1-rss0)/float64(max(s.UpAtEnd, 1)))
}

// startSwan runs charon in the server namespace as a responder for any
// client with the PSK, DoS protection off and its IKE SA table sized for
// thousands of SAs; it returns charon's PID.
func (b *bench) startSwan(t *testing.T, child bool) int {
	t.Helper()
	conf := fmt.Sprintf(`connections {
    load {
        version = 2
        local_addrs = %s
        remote_addrs = %%any
        proposals = aes256gcm16-prfsha256-x25519, aes256-sha256-ecp256
        dpd_delay = 600s
        pools = load
        local {
            auth = psk
            id = gw.load
        }
        remote {
            auth = psk
            id = %%any
        }
        children {
            net {
                local_ts = 10.97.0.0/16
                remote_ts = dynamic
                esp_proposals = aes256gcm16, aes256-sha256
            }
        }
    }
}
pools {
    load {
        addrs = %s
    }
}
secrets {
    ike-load {
        secret = "%s"
    }
}
`, serverAddr, vipNet, psk)
	extra := `dos_protection = no
    init_limit_half_open = 0
    init_limit_job_load = 0
    block_threshold = 1000000
    cookie_threshold = 1000000
    ikesa_table_size = 32768
    ikesa_table_segments = 16
    reuse_ikesa = no`
	d, err := swan.Start(b.srv, filepath.Join(b.dir, "swan"), conf, swan.Options{LibIPsec: child, LogLevel: swanLogLevel(), Extra: extra})
	if err != nil {
		t.Fatal(err)
	}
	b.swan = d
	t.Cleanup(d.Stop)
	pidText, err := os.ReadFile(filepath.Join(d.Dir, "run", "charon.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// udpRcvbufErrors reads the server namespace's UDP RcvbufErrors counter
// (/proc/net/snmp): datagrams dropped because a socket's receive buffer
// was full.
func udpRcvbufErrors(t *testing.T, b *bench) int {
	t.Helper()
	return nsRcvbufErrors(t, b.srv)
}

func nsRcvbufErrors(t *testing.T, ns *netlab.NS) int {
	t.Helper()
	out, err := ns.Run("cat", "/proc/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				v, _ := strconv.Atoi(f[i])
				return v
			}
		}
	}
	return -1
}

// swanLogLevel is charon's log level: silent unless HIKE_BENCH_SWANLOG
// asks for more (then the log is printed).
func swanLogLevel() int {
	if v, err := strconv.Atoi(os.Getenv("HIKE_BENCH_SWANLOG")); err == nil {
		return v
	}
	return -1
}
