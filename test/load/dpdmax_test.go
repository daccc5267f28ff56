package load

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/loadgen"
)

// TestBenchDPDMax looks for the DPD rate one hike serve sustains: in steps
// of more clients probing at the same delay (offered rate = clients /
// delay), each against a freshly started hike serve pinned to the given
// CPUs, it holds a steady DPD phase after setup and measures the exchanges
// completed per second, the share of probes left a retransmission timeout
// (2 s) without an answer, and hike's CPU time per exchange. A step is
// sustained when every client got its SA, no SA timed out and under 1% of
// the probes after setup had to be retransmitted.
//
//	HIKE_BENCH=1 go test ./test/load -run BenchDPDMax -v -timeout 30m
//
// HIKE_BENCH_DPD_STEPS (10000,20000,30000,40000,60000 clients),
// HIKE_BENCH_DPD (1s), HIKE_BENCH_HOLD (20s of DPD after setup),
// HIKE_BENCH_RATE (20000/s) and HIKE_BENCH_INFLIGHT (100) for the ramp,
// HIKE_BENCH_CPUS (0-1: taskset for hike serve; empty: none) and
// HIKE_BENCH_GOMAXPROCS (2) adjust it; HIKE_BENCH_PPROF=DIR saves a CPU
// profile of hike over each step's steady phase there, and one of the
// generator over its whole run. The load generator runs on the same
// machine: on a 2-core machine it shares hike's cores, and its own CPU
// share is in the table. It reports, it asserts nothing but that the runs
// happened.
func TestBenchDPDMax(t *testing.T) {
	if os.Getenv("HIKE_BENCH") == "" {
		t.Skip("a benchmark: set HIKE_BENCH=1")
	}
	delay, err := loadgen.ParseDuration(env("HIKE_BENCH_DPD", "1s"))
	if err != nil || delay <= 0 {
		t.Fatalf("HIKE_BENCH_DPD: %v", err)
	}
	hold, err := loadgen.ParseDuration(env("HIKE_BENCH_HOLD", "20s"))
	if err != nil || hold < 3*delay+2*time.Second {
		t.Fatalf("HIKE_BENCH_HOLD: %v; want at least three DPD delays and 2 s", err)
	}
	wrap := []string{"env", "GOMAXPROCS=" + env("HIKE_BENCH_GOMAXPROCS", "2")}
	if cpus := env("HIKE_BENCH_CPUS", "0-1"); cpus != "" {
		wrap = append(wrap, "taskset", "-c", cpus)
	}
	profDir := os.Getenv("HIKE_BENCH_PPROF")
	var rows []string
	best := 0.0
	for _, step := range strings.Split(env("HIKE_BENCH_DPD_STEPS", "10000,20000,30000,40000,60000"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(step))
		if err != nil || n < 1 {
			t.Fatalf("HIKE_BENCH_DPD_STEPS: %q is not a number of clients", step)
		}
		b := newBench(t)
		b.wrap = wrap
		b.startHike(t)
		pid := b.hike.Cmd.Process.Pid
		time.Sleep(500 * time.Millisecond)
		load0 := loadAvg(t)
		srvDrops0, cliDrops0 := nsRcvbufErrors(t, b.srv), nsRcvbufErrors(t, b.cli)
		args := []string{"--clients", strconv.Itoa(n), "--rate", env("HIKE_BENCH_RATE", "20000/s"),
			"--max-inflight", env("HIKE_BENCH_INFLIGHT", "100"), "--dpd", delay.String(), "--hold", hold.String(),
			"--watch-pid", strconv.Itoa(pid)}
		if profDir != "" {
			must(t, os.MkdirAll(profDir, 0o755))
			args = append(args, "--cpuprofile", filepath.Join(profDir, fmt.Sprintf("generator-cpu-%d.pb.gz", n)))
		}
		lr := b.startLoad(t, n, args...)
		var prof string
		select {
		case <-lr.settled:
			if profDir != "" {
				// From one delay after setup, when every SA probes at its
				// steady rate, to shortly before the run ends.
				time.Sleep(delay + 500*time.Millisecond)
				prof = b.cpuProfile(t, profDir, fmt.Sprintf("cpu-dpd-%d.pb.gz", n), hold-2*delay-2*time.Second)
			}
		case <-lr.done:
		}
		s := lr.wait(t)
		load1 := loadAvg(t)
		srvDrops, cliDrops := nsRcvbufErrors(t, b.srv)-srvDrops0, nsRcvbufErrors(t, b.cli)-cliDrops0
		var gen, resp loadgen.CPUUsage
		if len(s.CPU) == 2 {
			gen, resp = s.CPU[0], s.CPU[1]
		}
		d := s.DPD
		late := 100 * float64(d.RetransmitsAfterSetup) / float64(max(d.SentAfterSetup, 1))
		perDPD := resp.SteadySeconds * 1e6 / float64(max(d.AfterSetup, 1))
		genPerDPD := gen.SteadySeconds * 1e6 / float64(max(d.AfterSetup, 1))
		offered := float64(n) / delay.Seconds()
		// The achieved rate stays below clients / delay even when nothing
		// is lost: a client probes one delay after the last answer, and
		// its timer wheel ticks every 50 ms.
		sustained := s.Established == int64(n) && d.Timeouts == 0 && late < 1
		// Who lost the probes: hike's socket overflowing is hike's limit;
		// the generator dropping responses it had no room for is its own.
		bound := "-"
		switch {
		case sustained:
		case srvDrops > 0:
			bound = "hike (socket overflow)"
		case s.Drops.Queue > 0 || cliDrops > 0:
			bound = "generator (dropped responses)"
		default:
			bound = "CPU (no drops)"
		}
		if sustained {
			best = max(best, d.PerSecond)
		}
		rows = append(rows, fmt.Sprintf("| %d | %v | %.0f | %.0f | %d | %d | %.2f%% | %d | %.1f / %.1f | %.1f | %.0f%% | %.1f | %.0f%% | %d / %d / %d | %.0f | %v | %s | %.2f / %.2f |",
			n, delay, offered, d.PerSecond, d.SentAfterSetup, d.RetransmitsAfterSetup, late, d.Timeouts, d.RTT.P50, d.RTT.P99,
			perDPD, resp.SteadyPercent, genPerDPD, gen.SteadyPercent, srvDrops, cliDrops, s.Drops.Queue, s.SetupRate, sustained, bound, load0, load1))
		t.Logf("%d clients: %d established, setups ended at %.1fs, DPD window %.1fs of %.1fs, failures %v, client drops %+v, hike CPU %+v, generator CPU %+v; profile %q",
			n, s.Established, s.SetupElapsed, d.Window, s.Elapsed, s.Failures, s.Drops, resp, gen, prof)
		b.lab.Close()
	}
	t.Logf("\n| clients | DPD delay | offered /s | DPD /s | probes after setup | retransmitted | share | timeouts | RTT p50 / p99 ms | hike CPU per DPD µs | hike CPU | generator CPU per DPD µs | generator CPU | drops: hike socket / generator socket / generator queue | setup rate /s | sustained | if not, lost by | load average before / after |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|\n%s",
		strings.Join(rows, "\n"))
	t.Logf("highest DPD rate sustained (every client up, no timeout, under 1%% of probes retransmitted): %.0f/s", best)
}

// loadRun is a `hike load` under way whose progress the test follows.
type loadRun struct {
	cmd     *exec.Cmd
	stdout  bytes.Buffer
	stderr  tailBuffer
	settled chan struct{} // closed when every client has its setup outcome
	done    chan struct{} // closed when the progress stream ended
}

// progressUp reads the clients up and failed from `hike load --progress`.
var progressUp = regexp.MustCompile(`\sup (\d+)\s+failed (\d+)\s`)

// startLoad starts `hike load --json --progress` in the client namespace
// for n clients and follows its progress line.
func (b *bench) startLoad(t *testing.T, n int, args ...string) *loadRun {
	t.Helper()
	lr := &loadRun{settled: make(chan struct{}), done: make(chan struct{})}
	lr.cmd = exec.Command("ip", append([]string{"netns", "exec", b.cli.Name, hikeBin, "load", "--json", "--progress",
		"--target", serverAddr, "--psk-env", "HIKE_LOAD_PSK", "--sources", clientNet}, args...)...)
	lr.cmd.Env = append(os.Environ(), "HIKE_LOAD_PSK="+psk)
	lr.cmd.Stdout = &lr.stdout
	pipe, err := lr.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := lr.cmd.Start(); err != nil {
		t.Fatalf("hike load: %v", err)
	}
	go func() {
		defer close(lr.done)
		sc := bufio.NewScanner(io.TeeReader(pipe, &lr.stderr))
		sc.Split(splitProgress)
		var once sync.Once
		for sc.Scan() {
			if upFailed(sc.Text()) >= n {
				once.Do(func() { close(lr.settled) })
			}
		}
	}()
	return lr
}

// upFailed returns up + failed from a progress line, -1 from anything else.
func upFailed(line string) int {
	m := progressUp.FindStringSubmatch(line)
	if m == nil {
		return -1
	}
	up, _ := strconv.Atoi(m[1])
	failed, _ := strconv.Atoi(m[2])
	return up + failed
}

// splitProgress splits at \r (a progress update) and at \n.
func splitProgress(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

func (lr *loadRun) wait(t *testing.T) loadgen.Summary {
	t.Helper()
	<-lr.done
	if err := lr.cmd.Wait(); err != nil {
		t.Fatalf("hike load: %v\n%s", err, lr.stderr.String())
	}
	var s loadgen.Summary
	if err := json.Unmarshal(lr.stdout.Bytes(), &s); err != nil {
		t.Fatalf("hike load --json: %v: %s", err, lr.stdout.String())
	}
	return s
}

// tailBuffer keeps the last 8 KiB written to it: the progress stream of a
// long run is long, its end says why it failed.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (w *tailBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if over := len(w.b) - 8<<10; over > 0 {
		w.b = append(w.b[:0], w.b[over:]...)
	}
	return len(p), nil
}

func (w *tailBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.b)
}

func TestProgressParsing(t *testing.T) {
	sc := bufio.NewScanner(strings.NewReader("\r   0.5s  initiated 10/20  up 7  failed 1  setup 14/s  dpd 0/s   \r   1.0s  initiated 20/20  up 19  failed 1  setup 24/s   \nok"))
	sc.Split(splitProgress)
	var got []int
	for sc.Scan() {
		got = append(got, upFailed(sc.Text()))
	}
	if fmt.Sprint(got) != "[-1 8 20 -1]" {
		t.Fatalf("up+failed per line = %v, want [-1 8 20 -1]", got)
	}
}
