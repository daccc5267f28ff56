package swanha

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/loadgen"
	"github.com/hike-vpn/hike/internal/netlab"
	"github.com/hike-vpn/hike/internal/netlab/labtest"
	"github.com/hike-vpn/hike/internal/netlab/swan"
)

func TestMain(m *testing.M) {
	code := m.Run()
	labtest.Cleanup()
	os.Exit(code)
}

// The lab: clients in namespace c, the active node a serving the shared
// address to them, the passive node p behind a on a link of its own that
// carries nothing but the HA sync (and ARP).
const (
	sharedAddr = "10.99.0.1" // the active node's address the clients target
	clientGW   = "10.99.0.2"
	clientNet  = "10.201.0.0/16"
	// The HA plugin elects the node whose local address sorts after the
	// remote one (strcmp) for odd segments, so a takes segment 1.
	haActive  = "10.98.0.2"
	haPassive = "10.98.0.1"
	psk       = "hike swanha benchmark pre-shared key"
)

// TestBenchSwanHA measures the sync traffic of a strongSwan 5.9.8 HA pair
// (active/passive, one segment) while `hike load` clients set up IKE SAs
// with the active node and then probe them with DPD:
//
//	HIKE_BENCH=1 go test ./test/swanha -run BenchSwanHA -v -timeout 30m
//
// HIKE_BENCH_CLIENTS (1000,5000), HIKE_BENCH_DPD (5,1: every delay is run
// with every size), HIKE_BENCH_RATE (500/s) and HIKE_BENCH_HOLD (steady
// phase after setup; 5 DPD delays, at least 10 s) adjust it;
// HIKE_BENCH_RMEM sets net.core.rmem_default in both nodes' namespaces
// (the HA socket's receive buffer), HIKE_BENCH_PASSIVE_NICE the passive
// charon's nice value, HIKE_BENCH_SWAN_DPD (e.g. 2s) the gateway's own
// DPD delay (600 s, so that only the clients probe), and HIKE_BIN runs a
// prebuilt hike.
//
// It reports the messages and bytes per second on the sync link during
// setup and in steady DPD, per IKE SA set up and per DPD exchange, and a
// breakdown by HA message type from a capture of the link. It asserts
// only that the pair worked: the passive node holds every IKE SA the
// clients set up, neither node's heartbeat watchdog fired, and every
// message-ID update of the steady phase is well formed.
func TestBenchSwanHA(t *testing.T) {
	if os.Getenv("HIKE_BENCH") == "" {
		t.Skip("a benchmark: set HIKE_BENCH=1")
	}
	labtest.Require(t, requirements)
	hike := os.Getenv("HIKE_BIN")
	if hike == "" {
		hike = labtest.Hike(t)
	}
	var rows []string
	for _, d := range strings.Split(env("HIKE_BENCH_DPD", "5,1"), ",") {
		dpd, err := strconv.Atoi(strings.TrimSpace(d))
		if err != nil || dpd < 1 {
			t.Fatalf("HIKE_BENCH_DPD: %q is not a delay in seconds", d)
		}
		for _, c := range strings.Split(env("HIKE_BENCH_CLIENTS", "1000,5000"), ",") {
			n, err := strconv.Atoi(strings.TrimSpace(c))
			if err != nil || n < 1 {
				t.Fatalf("HIKE_BENCH_CLIENTS: %q is not a number of clients", c)
			}
			var r result
			t.Run(fmt.Sprintf("clients=%d/dpd=%ds", n, dpd), func(t *testing.T) {
				r = runPair(t, hike, n, dpd)
			})
			if r.clients > 0 {
				rows = append(rows, r.row())
			}
		}
	}
	t.Logf("\n%s\n%s", header, strings.Join(rows, "\n"))
}

// requirements: what runPair needs beyond charon: nft for the counters,
// tcpdump for the capture, and the ha plugin.
func requirements() error {
	if err := swan.Check(); err != nil {
		return err
	}
	if _, err := os.Stat("/usr/lib/ipsec/plugins/libstrongswan-ha.so"); err != nil {
		return errors.New("swanha: strongSwan's ha plugin missing (apt-get install libcharon-extra-plugins)")
	}
	for _, tool := range []string{"nft", "tcpdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("swanha: %s missing", tool)
		}
	}
	return nil
}

// swanctlConf is the same on both nodes: the passive node finds an SA's
// config by its name when the active node's IKE_UPDATE arrives.
const swanctlConf = `connections {
    load {
        version = 2
        local_addrs = ` + sharedAddr + `
        remote_addrs = %any
        proposals = aes256gcm16-prfsha256-x25519
        dpd_delay = 600s
        local {
            auth = psk
            id = gw.load
        }
        remote {
            auth = psk
            id = %any
        }
    }
}
secrets {
    ike-load {
        secret = "` + psk + `"
    }
}
`

// charonExtra goes into charon { }: the responder tuned as in test/load's
// strongSwan benchmark, plus the ha plugin. segment_count = 1 puts every
// SA in one segment; monitor (heartbeats every heartbeat_delay) runs the
// plugin's own election, which gives the segment to the node whose local
// address sorts last, since CLUSTERIP, the usual way to share the
// address, is not available here (without /proc/net/ipt_CLUSTERIP the
// plugin's kernel part silently does nothing). No secret: the sync runs in the clear
// rather than in an ESP transport SA, which would need kernel ESP between
// the nodes. Logging: only the cfg group at 1, for the plugin's segment
// and "installed HA passive IKE_SA" lines.
func charonExtra(local, remote string) string {
	return `dos_protection = no
    init_limit_half_open = 0
    init_limit_job_load = 0
    block_threshold = 1000000
    cookie_threshold = 1000000
    ikesa_table_size = 32768
    ikesa_table_segments = 16
    reuse_ikesa = no
    filelog {
        main {
            cfg = 1
        }
    }
    plugins {
        ha {
            local = ` + local + `
            remote = ` + remote + `
            segment_count = 1
            monitor = yes
            heartbeat_delay = 1000
            heartbeat_timeout = 5000
            resync = yes
            fifo_interface = yes
            autobalance = 0
        }
    }`
}

// counterRE reads `nft list counters`.
var counterRE = regexp.MustCompile(`counter (\w+) \{\s*packets (\d+) bytes (\d+)`)

// sample is the counters of the active node's namespace at one time.
type sample struct {
	at time.Time
	c  map[string][2]uint64 // name: packets, bytes
}

// nftRules count, in the active node's namespace, the HA datagrams each
// way and the IKE datagrams from the clients (every DPD request is one).
const nftRules = `table inet swanha {
    counter ha_tx { }
    counter ha_rx { }
    counter ike_rx { }
    counter ike_tx { }
    chain in {
        type filter hook input priority 0; policy accept;
        udp sport 4510 counter name ha_rx
        iifname "eth0" udp dport { 500, 4500 } counter name ike_rx
    }
    chain out {
        type filter hook output priority 0; policy accept;
        udp dport 4510 counter name ha_tx
        oifname "eth0" udp sport { 500, 4500 } counter name ike_tx
    }
}
`

func readCounters(ns *netlab.NS) (sample, error) {
	out, err := ns.Run("nft", "list", "counters", "table", "inet", "swanha")
	s := sample{at: time.Now(), c: map[string][2]uint64{}}
	if err != nil {
		return s, err
	}
	for _, m := range counterRE.FindAllStringSubmatch(string(out), -1) {
		p, _ := strconv.ParseUint(m[2], 10, 64)
		b, _ := strconv.ParseUint(m[3], 10, 64)
		s.c[m[1]] = [2]uint64{p, b}
	}
	if len(s.c) != 4 {
		return s, fmt.Errorf("nft counters: %q", out)
	}
	return s, nil
}

// at interpolates counter name (0 packets, 1 bytes) at time x.
func at(ss []sample, name string, i int, x time.Time) float64 {
	if len(ss) == 0 {
		return 0
	}
	if !x.After(ss[0].at) {
		return float64(ss[0].c[name][i])
	}
	for k := 1; k < len(ss); k++ {
		if !x.After(ss[k].at) {
			a, b := ss[k-1], ss[k]
			f := float64(x.Sub(a.at)) / float64(b.at.Sub(a.at))
			return float64(a.c[name][i]) + f*(float64(b.c[name][i])-float64(a.c[name][i]))
		}
	}
	return float64(ss[len(ss)-1].c[name][i])
}

// result is one run's figures.
type result struct {
	clients, dpd  int
	established   int64
	passiveSAs    int
	setupS        float64
	setupMsgs     int     // HA messages active -> passive that set an SA up
	setupBytes    int     // their IP bytes
	rampMsgs      float64 // all HA messages active -> passive during the ramp
	setupDrops    int     // receive buffer overflows at the passive node during the ramp
	steadyS       float64
	steadyMsgs    float64 // per second, active -> passive
	steadyBytes   float64 // IP bytes per second, active -> passive
	steadyRx      float64 // per second, passive -> active
	midsPerS      float64 // message-ID updates per second in the capture
	passiveDrops  int     // UDP receive buffer overflows at the passive node
	ikeReqs       float64 // client datagrams per second into the active node, same window: DPD requests, or responses when the gateway probes
	dpdPerS       float64 // hike load's DPD exchanges per second
	dpdTimeouts   uint64
	byType        string
	loadBefore    float64
	loadAfter     float64
	activeCPUPct  float64
	passiveCPUPct float64
}

const header = "| clients | DPD s | established | passive holds | passive rcvbuf drops | setup s | HA msgs per SA set up | HA IP bytes per SA set up | steady window s | DPD /s (hike load) | client datagrams /s at active | HA msgs /s a→p | HA IP bytes /s a→p | HA msgs /s p→a | HA msgs per client datagram | HA IP bytes per client datagram | MID updates per client datagram (capture) | MID updates per completed DPD | DPD timeouts | active / passive CPU % in steady | load avg before / after |\n" +
	"|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"

func (r result) row() string {
	perDPD, bytesPerDPD := 0.0, 0.0
	if r.ikeReqs > 0 {
		perDPD, bytesPerDPD = r.steadyMsgs/r.ikeReqs, r.steadyBytes/r.ikeReqs
	}
	midsPerReq, midsPerDPD := 0.0, 0.0
	if r.ikeReqs > 0 {
		midsPerReq = r.midsPerS / r.ikeReqs
	}
	// Retransmitted requests are answered from charon's cache without a
	// new message ID: per exchange, hike load's count of completed DPD is
	// the denominator (over its own whole DPD periods, nearly the same
	// window).
	if r.dpdPerS > 0 {
		midsPerDPD = r.midsPerS / r.dpdPerS
	}
	perSA, bytesPerSA := 0.0, 0.0
	if r.established > 0 {
		perSA, bytesPerSA = float64(r.setupMsgs)/float64(r.established), float64(r.setupBytes)/float64(r.established)
	}
	return fmt.Sprintf("| %d | %d | %d | %d | %d | %.1f | %.2f | %.0f | %.1f | %.0f | %.0f | %.0f | %.0f | %.1f | %.3f | %.1f | %.3f | %.3f | %d | %.0f / %.0f | %.2f / %.2f |",
		r.clients, r.dpd, r.established, r.passiveSAs, r.passiveDrops, r.setupS, perSA, bytesPerSA, r.steadyS, r.dpdPerS, r.ikeReqs,
		r.steadyMsgs, r.steadyBytes, r.steadyRx, perDPD, bytesPerDPD, midsPerReq, midsPerDPD, r.dpdTimeouts, r.activeCPUPct, r.passiveCPUPct,
		r.loadBefore, r.loadAfter)
}

// runPair builds the lab, starts the pair, runs the clients and measures.
func runPair(t *testing.T, hike string, clients, dpd int) result {
	dir := t.TempDir()
	lab, err := netlab.New(fmt.Sprintf("sh%d", os.Getpid()%1000))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	a, err := lab.AddNS("a")
	must(t, err)
	p, err := lab.AddNS("p")
	must(t, err)
	c, err := lab.AddNS("c")
	must(t, err)
	must(t, lab.Veth(a, "eth0", netip.MustParsePrefix(sharedAddr+"/24"), c, "eth0", netip.MustParsePrefix(clientGW+"/24")))
	must(t, lab.Veth(a, "ha0", netip.MustParsePrefix(haActive+"/24"), p, "ha0", netip.MustParsePrefix(haPassive+"/24")))
	must(t, c.AddAddr("lo", netip.MustParsePrefix(clientNet)))
	if out, err := a.Run("ip", "route", "add", clientNet, "via", clientGW); err != nil {
		t.Fatalf("route: %v: %s", err, out)
	}
	// The HA socket's receive buffer is the namespace's default
	// (net.core.rmem_default, per namespace on recent kernels): stock
	// unless HIKE_BENCH_RMEM asks for more on both nodes.
	if v := os.Getenv("HIKE_BENCH_RMEM"); v != "" {
		for _, ns := range []*netlab.NS{a, p} {
			if out, err := ns.Run("sysctl", "-w", "net.core.rmem_default="+v); err != nil {
				t.Fatalf("HIKE_BENCH_RMEM: %v: %s", err, out)
			}
		}
	}
	rules := filepath.Join(dir, "swanha.nft")
	must(t, os.WriteFile(rules, []byte(nftRules), 0o600))
	if out, err := a.Run("nft", "-f", rules); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}

	// The passive node first, so that the active one's first heartbeats
	// find it.
	opts := swan.Options{LogLevel: -1, Plugins: []string{"ha"}}
	opts.Extra = charonExtra(haPassive, haActive)
	conf := swanctlConf
	// HIKE_BENCH_SWAN_DPD makes the gateway probe too: its own DPD
	// requests are synced as IKE_MID_INITIATOR.
	if v := os.Getenv("HIKE_BENCH_SWAN_DPD"); v != "" {
		conf = strings.Replace(conf, "dpd_delay = 600s", "dpd_delay = "+v, 1)
	}
	passive, err := swan.Start(p, filepath.Join(dir, "passive"), conf, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(passive.Stop)
	opts.Extra = charonExtra(haActive, haPassive)
	active, err := swan.Start(a, filepath.Join(dir, "active"), conf, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(active.Stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("active charon log:\n%s\npassive charon log:\n%s", tail(active.Log(), 40), tail(passive.Log(), 40))
		}
	})
	// The election: a takes segment 1, p drops it.
	waitLog(t, active, "HA segment 1 activated", 15*time.Second)
	if strings.Contains(passive.Log(), "HA segment 1 activated") && !strings.Contains(passive.Log(), "HA segment 1 deactivated") {
		t.Fatalf("the passive node holds segment 1:\n%s", tail(passive.Log(), 30))
	}

	capFile := filepath.Join(dir, "ha0.pcap")
	// 68 bytes: a message-ID update whole, and of an IKE_ADD no more than
	// its SA ID and algorithms, never the DH secret and nonces after them.
	tcpd, err := a.Start("tcpdump", filepath.Join(dir, "tcpdump.log"), "tcpdump", "-i", "ha0", "-n", "-s", "68", "-B", "16384",
		"-w", capFile, "udp", "port", "4510")
	must(t, err)
	time.Sleep(time.Second) // tcpdump attaches, and the link carries heartbeats only

	pidA, pidP := charonPID(t, active), charonPID(t, passive)
	if v := os.Getenv("HIKE_BENCH_PASSIVE_NICE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("HIKE_BENCH_PASSIVE_NICE: %v", err)
		}
		renice(t, pidP, n)
	}
	hold := time.Duration(max(5*dpd, 10)) * time.Second
	if h := os.Getenv("HIKE_BENCH_HOLD"); h != "" {
		if hold, err = time.ParseDuration(h); err != nil {
			t.Fatalf("HIKE_BENCH_HOLD: %v", err)
		}
	}
	var (
		mu      sync.Mutex
		samples []sample
		stop    = make(chan struct{})
		done    = make(chan struct{})
		halt    sync.Once
	)
	// The sampler never touches t: it may outlive a failed test by the
	// moment the cleanups below take to stop it.
	stopSampler := func() { halt.Do(func() { close(stop); <-done }) }
	t.Cleanup(stopSampler)
	go func() {
		defer close(done)
		tk := time.NewTicker(200 * time.Millisecond)
		defer tk.Stop()
		for {
			s, err := readCounters(a)
			if err == nil {
				var n int
				if n, err = udpRcvbufErrors(p); err == nil {
					s.c["p_drops"] = [2]uint64{uint64(n), 0}
				}
			}
			if err == nil {
				mu.Lock()
				samples = append(samples, s)
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	load0 := loadAvg()
	drops0 := rcvbufErrors(t, p)
	t0 := time.Now()
	s := runLoad(t, c, hike, "--clients", strconv.Itoa(clients), "--rate", env("HIKE_BENCH_RATE", "500/s"),
		"--dpd", strconv.Itoa(dpd), "--hold", hold.String(),
		"--watch-pid", strconv.Itoa(pidA), "--watch-pid", strconv.Itoa(pidP))
	stopSampler()
	must(t, tcpd.Stop(5*time.Second))
	r := result{clients: clients, dpd: dpd, established: s.Established, dpdPerS: s.DPD.PerSecond,
		dpdTimeouts: s.DPD.Timeouts, loadBefore: load0, loadAfter: loadAvg(), setupS: s.SetupElapsed}
	if len(s.CPU) == 3 {
		r.activeCPUPct, r.passiveCPUPct = s.CPU[1].SteadyPercent, s.CPU[2].SteadyPercent
	}
	if s.SetupElapsed <= 0 || s.Established == 0 {
		t.Fatalf("setup did not complete: established %d, failed %d %v, pending %d", s.Established, s.Failed, s.Failures, s.Pending)
	}

	// Setup: from the start to the last client's outcome, and a moment
	// after it, as the last IKE_UPDATE leaves with the last IKE_AUTH
	// response. Steady: from one DPD delay after setup (every SA probing
	// at its rate) to half a second before the end.
	setupEnd := t0.Add(time.Duration(s.SetupElapsed*float64(time.Second)) + 200*time.Millisecond)
	from := t0.Add(time.Duration((s.SetupElapsed + float64(dpd)) * float64(time.Second)))
	to := t0.Add(time.Duration((s.Elapsed - 0.5) * float64(time.Second)))
	if !to.After(from.Add(time.Second)) {
		t.Fatalf("no steady window: setup %.1fs, run %.1fs, DPD %ds", s.SetupElapsed, s.Elapsed, dpd)
	}
	mu.Lock()
	ss := samples
	mu.Unlock()
	r.rampMsgs = at(ss, "ha_tx", 0, setupEnd) - at(ss, "ha_tx", 0, t0)
	r.setupDrops = int(at(ss, "p_drops", 0, setupEnd) - at(ss, "p_drops", 0, t0))
	w := to.Sub(from).Seconds()
	r.steadyS = w
	r.steadyMsgs = (at(ss, "ha_tx", 0, to) - at(ss, "ha_tx", 0, from)) / w
	r.steadyBytes = (at(ss, "ha_tx", 1, to) - at(ss, "ha_tx", 1, from)) / w
	r.steadyRx = (at(ss, "ha_rx", 0, to) - at(ss, "ha_rx", 0, from)) / w
	r.ikeReqs = (at(ss, "ike_rx", 0, to) - at(ss, "ike_rx", 0, from)) / w

	// The capture: messages by type in each phase, and the message IDs
	// the updates carry.
	f, err := os.Open(capFile)
	must(t, err)
	pkts, err := readPcap(f, netip.MustParseAddr(haActive).As4())
	f.Close()
	must(t, err)
	b := breakdown(t, pkts, t0, setupEnd, from, to, s.Established)
	r.byType, r.setupMsgs, r.setupBytes = b.text, b.setupMsgs, b.setupBytes
	r.midsPerS = float64(b.mids) / w
	t.Logf("capture: %s", r.byType)
	t.Logf("HA lines of the active node's log:\n%s\nof the passive node's:\n%s", haLines(active.Log()), haLines(passive.Log()))

	// The pair must be working: the passive node holds every SA.
	sas, err := passive.SAs()
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]int{}
	for _, sa := range sas {
		states[sa.State]++
		if sa.State == "PASSIVE" {
			r.passiveSAs++
		}
	}
	logP := passive.Log()
	t.Logf("hike load: established %d failed %d %v, DPD %d sent %d completed %d timeouts, retransmits %d, %.0f DPD/s over %.1fs; passive node's SAs by state %v, its log says %d installed; active CPU %+v",
		s.Established, s.Failed, s.Failures, s.DPD.Sent, s.DPD.Completed, s.DPD.Timeouts, s.Retransmits, s.DPD.PerSecond, s.DPD.Window,
		states, strings.Count(logP, "installed HA passive IKE_SA"), s.CPU)
	r.passiveDrops = rcvbufErrors(t, p) - drops0
	t.Logf("during the ramp: %.0f HA messages a→p in %.1f s (%.2f per SA, with the DPD of SAs already up), %d receive buffer overflows at the passive node",
		r.rampMsgs, s.SetupElapsed, r.rampMsgs/float64(max(s.Established, 1)), r.setupDrops)
	t.Logf("sync losses: %d datagrams dropped for a full receive buffer in the passive node's namespace, %d \"pushing HA message failed\" on the active node, %d \"not found\" on the passive node",
		r.passiveDrops, strings.Count(active.Log(), "pushing HA message failed"), strings.Count(logP, "not found"))
	// A watchdog that fires (no heartbeat for heartbeat_timeout) makes a
	// node take every segment; if the active node then hears its peer
	// take segment 1, it drops it and the roles swap while the clients
	// still send to a, whose SAs are now passive. That is no steady pair.
	for _, d := range []*swan.Daemon{active, passive} {
		if n := strings.Count(d.Log(), "no heartbeat received"); n > 0 {
			t.Errorf("%s missed heartbeats %d times and took every segment; the roles may have swapped (passive node's SAs by state %v)", d.NS.Name, n, states)
		}
	}
	if int64(r.passiveSAs) != s.Established {
		t.Errorf("the passive node holds %d passive IKE SAs, the clients set up %d", r.passiveSAs, s.Established)
	}
	return r
}

// breakdown counts the capture's messages by type and direction in the
// setup and steady windows, and checks the steady message-ID updates: each
// names an SA the setup announced and carries a message ID past IKE_AUTH.
func breakdown(t *testing.T, pkts []haPacket, t0, setupEnd, from, to time.Time, established int64) capture {
	type key struct {
		phase string
		out   bool
		typ   byte
	}
	count, bytes := map[key]int{}, map[key]int{}
	added := map[uint64]bool{}
	bad, mids := 0, 0
	var c capture
	for _, p := range pkts {
		// What sets an SA up, whenever it was sent: the IKE_ADD after
		// IKE_SA_INIT, the message-ID update for the IKE_AUTH request
		// (message 1, so it says 2) and the IKE_UPDATE once established.
		if p.Out && (p.Type == haIKEAdd || p.Type == haIKEUpdate || p.Type == haIKEMIDResponder && p.MID == 2) {
			c.setupMsgs++
			c.setupBytes += p.IPLen
		}
		phase := ""
		switch {
		case p.At.Before(t0):
			phase = "idle"
		case !p.At.After(setupEnd):
			phase = "setup"
		case !p.At.Before(from) && !p.At.After(to):
			phase = "steady"
		default:
			continue
		}
		k := key{phase, p.Out, p.Type}
		count[k]++
		bytes[k] += p.PayloadLen
		if p.Out && p.Type == haIKEMIDResponder && phase == "setup" && p.SPIi != 0 {
			added[p.SPIi] = true
		}
		if p.Out && phase == "steady" && (p.Type == haIKEMIDResponder || p.Type == haIKEMIDInitiator) {
			mids++
			// The clients' IKE_AUTH is message 1, so their first DPD is 2
			// and its update says 3; the gateway's own requests count
			// from 0, so its first update says 1.
			least := uint32(3)
			if p.Type == haIKEMIDInitiator {
				least = 1
			}
			if p.PayloadLen != haMIDLen || p.MID < least {
				bad++
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d steady message-ID updates malformed or with a message ID below the first DPD's", bad, mids)
	}
	var keys []key
	for k := range count {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].phase != keys[j].phase {
			return keys[i].phase < keys[j].phase
		}
		if keys[i].out != keys[j].out {
			return keys[i].out
		}
		return keys[i].typ < keys[j].typ
	})
	var b strings.Builder
	for _, k := range keys {
		dir := "a→p"
		if !k.out {
			dir = "p→a"
		}
		fmt.Fprintf(&b, "%s %s %s: %d msgs, %.1f B payload each; ", k.phase, dir, haTypeName(k.typ), count[k], float64(bytes[k])/float64(count[k]))
	}
	fmt.Fprintf(&b, "%d SAs announced by IKE_AUTH updates during setup (%d established)", len(added), established)
	c.text, c.mids = b.String(), mids
	return c
}

// capture is what breakdown finds.
type capture struct {
	text string
	// mids counts the steady window's message-ID updates.
	mids int
	// setupMsgs and setupBytes (IP) are what set the SAs up.
	setupMsgs, setupBytes int
}

// haLines picks the HA plugin's own lines (election, heartbeats) out of a
// charon log, leaving out the one line per SA the passive node writes.
func haLines(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, " HA ") && !strings.Contains(l, "installed HA passive IKE_SA") || strings.Contains(l, "heartbeat") ||
			strings.Contains(l, "CLUSTERIP") || strings.Contains(l, "segment") || strings.Contains(l, "resync") {
			out = append(out, l)
		}
	}
	if len(out) > 30 {
		out = append(out[:30], fmt.Sprintf("... %d more", len(out)-30))
	}
	return strings.Join(out, "\n")
}

// rcvbufErrors reads a namespace's UDP RcvbufErrors (/proc/net/snmp):
// datagrams dropped for a full socket receive buffer. The HA plugin has
// one thread reading and applying sync messages, and nothing acknowledges
// them: what overflows is lost.
func rcvbufErrors(t *testing.T, ns *netlab.NS) int {
	t.Helper()
	n, err := udpRcvbufErrors(ns)
	must(t, err)
	return n
}

func udpRcvbufErrors(ns *netlab.NS) (int, error) {
	out, err := ns.Run("cat", "/proc/net/snmp")
	if err != nil {
		return 0, err
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
				return strconv.Atoi(f[i])
			}
		}
	}
	return 0, fmt.Errorf("no UDP RcvbufErrors in %s's /proc/net/snmp", ns.Name)
}

// renice sets the nice value of every thread of pid: the passive node's
// one thread applying sync messages competes for two cores with the
// active node's workers and the load generator, and whether it is CPU or
// scheduling that makes it drop datagrams shows when it gets priority.
func renice(t *testing.T, pid, nice int) {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	must(t, err)
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil {
			t.Fatalf("renice thread %d of %d: %v", tid, pid, err)
		}
	}
}

func waitLog(t *testing.T, d *swan.Daemon, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(d.Log(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %s's log within %v:\n%s", s, d.NS.Name, timeout, tail(d.Log(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runLoad runs `hike load` against the shared address and decodes its
// summary.
func runLoad(t *testing.T, c *netlab.NS, hike string, args ...string) loadgen.Summary {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", c.Name, hike, "load", "--json",
		"--target", sharedAddr, "--psk-env", "HIKE_LOAD_PSK", "--sources", clientNet}, args...)...)
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

func charonPID(t *testing.T, d *swan.Daemon) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.Dir, "run", "charon.pid"))
	must(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	must(t, err)
	return pid
}

func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
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
