package load

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pprofGet fetches path from hike serve's control socket, which serves
// Go's runtime profiles under /debug/pprof/ (internal/control/pprof.go).
// The socket is a file, so it is reachable from outside the namespace.
func (b *bench) pprofGet(t *testing.T, path string, timeout time.Duration) []byte {
	t.Helper()
	sock := filepath.Join(b.dir, "control.sock")
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
	resp, err := c.Get("http://hike" + path)
	if err != nil {
		t.Fatalf("GET %s on the control socket: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s on the control socket: %s, %v: %.200s", path, resp.Status, err, body)
	}
	return body
}

// heapProfile saves hike's heap profile, taken after a collection, as
// DIR/heap-N.pb.gz, and logs the runtime's own account of its memory per
// IKE SA up: what the Go heap holds live, beside the RSS the table shows.
func (b *bench) heapProfile(t *testing.T, dir string, n int, up int64) {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o755))
	path := filepath.Join(dir, fmt.Sprintf("heap-%d.pb.gz", n))
	must(t, os.WriteFile(path, b.pprofGet(t, "/debug/pprof/heap?gc=1", time.Minute), 0o644))
	ms := memStats(b.pprofGet(t, "/debug/pprof/heap?debug=1", time.Minute))
	per := func(k string) float64 { return float64(ms[k]) / 1024 / float64(max(up, 1)) }
	t.Logf("hike, %d SAs up: heap profile %s; per IKE SA: HeapAlloc %.2f KiB (live after GC), HeapInuse %.2f KiB, HeapSys %.2f KiB, Sys %.2f KiB; goroutines: see /debug/pprof/goroutine",
		up, path, per("HeapAlloc"), per("HeapInuse"), per("HeapSys"), per("Sys"))
}

// cpuProfile saves a CPU profile of hike over the next d as DIR/NAME.
func (b *bench) cpuProfile(t *testing.T, dir, name string, d time.Duration) string {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o755))
	path := filepath.Join(dir, name)
	secs := max(int(d.Seconds()), 1)
	must(t, os.WriteFile(path, b.pprofGet(t, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), d+time.Minute), 0o644))
	return path
}

// memStats reads the runtime.MemStats lines ("# HeapAlloc = 123") that
// the text form of the heap profile ends with.
func memStats(text []byte) map[string]uint64 {
	out := map[string]uint64{}
	for _, l := range strings.Split(string(text), "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(l, "# "), " = ")
		if !ok || !strings.HasPrefix(l, "# ") {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

// loadAvg is the machine's 1-minute load average: the benchmarks share
// two cores with whatever else runs, and say how busy they were.
func loadAvg(t *testing.T) float64 {
	t.Helper()
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		t.Fatalf("/proc/loadavg: %q", b)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		t.Fatalf("/proc/loadavg: %q", b)
	}
	return v
}

func TestMemStats(t *testing.T) {
	got := memStats([]byte("heap profile: 1: 2 [3: 4] @ heap/1048576\n\n# runtime.MemStats\n# Alloc = 1234\n# HeapInuse = 8192\n# PauseNs = [1 2 3]\n# NumGC = 7\n"))
	if got["Alloc"] != 1234 || got["HeapInuse"] != 8192 || got["NumGC"] != 7 || len(got) != 3 {
		t.Fatalf("memStats = %v", got)
	}
}
