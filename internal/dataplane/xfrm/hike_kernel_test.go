//go:build xfrmkernel

// Two `hike serve` daemons with the XFRM data plane, one per namespace of
// the kernel-test lab: the end-to-end check of issue 7 item 2(b) and (c).
// The daemon binary comes from HIKE_BIN; test/qemu/run.sh builds it
// statically and puts it at /bin/hike in the guest.

package xfrm

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dp "github.com/hike-vpn/hike/internal/dataplane"
)

// syncBuffer collects a daemon's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type hikeProc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// startHike runs `hike serve` inside ns. iproute2's `netns exec` execs in
// place, so the process the test signals is hike itself.
func (l *lab) startHike(bin, ns, name, conf string) *hikeProc {
	l.t.Helper()
	p := &hikeProc{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(l.ip, "netns", "exec", ns, bin, "serve", "-c", conf)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		l.t.Fatalf("starting %s: %v", name, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	l.t.Cleanup(p.kill)
	return p
}

func (p *hikeProc) kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

func (p *hikeProc) has(s string) bool { return strings.Contains(p.out.String(), s) }

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}

// childSPIs asks a daemon over its control socket for its one Child SA.
func childSPIs(t *testing.T, bin, sock string) (in, out uint32, esn bool, retransmits uint32) {
	t.Helper()
	raw, err := exec.Command(bin, "sa", "list", "--json", "--socket", sock).Output()
	if err != nil {
		t.Fatalf("hike sa list: %v", err)
	}
	var sas []struct {
		Stats struct {
			Retransmits uint32 `json:"retransmits"`
		} `json:"stats"`
		Children []struct {
			SPIIn  string `json:"spi_in"`
			SPIOut string `json:"spi_out"`
			ESN    bool   `json:"esn"`
		} `json:"children"`
	}
	if err := json.Unmarshal(raw, &sas); err != nil {
		t.Fatalf("hike sa list: %v\n%s", err, raw)
	}
	if len(sas) != 1 || len(sas[0].Children) != 1 {
		t.Fatalf("want one IKE SA with one Child SA, got\n%s", raw)
	}
	c := sas[0].Children[0]
	i, err1 := strconv.ParseUint(c.SPIIn, 16, 32)
	o, err2 := strconv.ParseUint(c.SPIOut, 16, 32)
	if err1 != nil || err2 != nil {
		t.Fatalf("SPIs %q/%q", c.SPIIn, c.SPIOut)
	}
	return uint32(i), uint32(o), c.ESN, sas[0].Stats.Retransmits
}

// saStats reads struct xfrm_stats from an SA's xfrm_usersa_info: packets
// dropped as outside the window, as replays, and for a bad ICV.
func (b *Backend) saStats(id dp.SAID) (window, replay, integrity uint32, err error) {
	err = b.c.request("reading SA "+id.String(), getSAMsg(id.Dst, id.SPI), msgNewSA, func(body []byte) error {
		if len(body) < sizeUsersaInfo {
			return errShort
		}
		s := body[192:] // after sel, id, saddr, lft and curlft
		window, replay, integrity = ne.Uint32(s), ne.Uint32(s[4:]), ne.Uint32(s[8:])
		return nil
	})
	return
}

// TestKernelHikeRFC6311 runs two hike daemons with dataplane xfrm: A
// initiates a site-to-site tunnel (AES-GCM with ESN, RFC 6311 message ID
// and replay counter sync) to B, traffic crosses kernel ESP and the kernel
// counts it. A is then killed outright; the kernel carries the tunnel on
// without it. A restarts from its encrypted state file, which is stale by
// then, adopts the SAs the kernel kept, and it resynchronises with N(16422) and
// N(16423). Read back with XFRM_MSG_GETAE, B's outbound counter and A's
// inbound window must both have moved by the announced delta (RFC 6311
// §5.2), traffic must still flow, and a sender reusing sequence numbers
// must be dropped by A's kernel.
func TestKernelHikeRFC6311(t *testing.T) {
	bin := hikeBin(t)
	l := newLab(t)
	ia, ib := l.inner(1)
	dir := t.TempDir()
	var a, b *hikeProc
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*hikeProc{a, b} {
				if p != nil {
					t.Logf("%s output:\n%s", p.name, p.out.String())
				}
			}
			out, _ := exec.Command(l.ip, "-n", l.nsA, "-s", "xfrm", "state").CombinedOutput()
			t.Logf("A's kernel SAs (keys left out):\n%s", withoutKeys(string(out)))
		}
	})
	k := make([]byte, 32)
	rand.Read(k)
	if err := os.WriteFile(filepath.Join(dir, "a.key"), []byte(hex.EncodeToString(k)), 0o600); err != nil {
		t.Fatal(err)
	}
	// A fixed jump rather than auto, so that GETAE can check it.
	const outboundJump = 1 << 24
	psk := newPSK()
	stateFile := filepath.Join(dir, "a.state")
	confA := writeHikeConf(t, dir, psk, "a", "[192.168.100.2]", "10.1.1.0/24", "10.2.1.0/24",
		fmt.Sprintf("state:\n  path: %s\n  key_file: %s/a.key\n", stateFile, dir), outboundJump)
	confB := writeHikeConf(t, dir, psk, "b", "any", "10.2.1.0/24", "10.1.1.0/24", "", outboundJump)

	t0 := time.Now()
	b = l.startHike(bin, l.nsB, "B", confB)
	waitUntil(t, 20*time.Second, "B to listen", func() bool { return b.has(`msg=listening`) })
	t1 := time.Now()
	a = l.startHike(bin, l.nsA, "A", confA)
	waitUntil(t, 30*time.Second, "the tunnel", func() bool { return a.has(`msg="Child SA established"`) })
	if !a.has("kind=xfrm") || !b.has("kind=xfrm") {
		t.Fatal("a daemon did not select the xfrm data plane")
	}
	spiIn, spiOut, esn, retr := childSPIs(t, bin, filepath.Join(dir, "a.sock"))
	t.Logf("B listening after %v, tunnel up %v after A started (%d IKE retransmissions)",
		t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond), retr)
	if !esn {
		t.Fatal("Child SA negotiated without ESN")
	}
	aOut := dp.SAID{SPI: spiOut, Src: l.outerA, Dst: l.outerB} // B's inbound
	aIn := dp.SAID{SPI: spiIn, Src: l.outerB, Dst: l.outerA}   // B's outbound
	bIn, bOut := aOut, aIn

	// (b) traffic through kernel ESP, counted by both kernels.
	ping := func(n int) {
		t.Helper()
		if err := l.ping(ia, ib, n, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	ping(5)
	counters := func(be *Backend, id dp.SAID) dp.Counters {
		t.Helper()
		c, err := be.Counters(id)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ao, bi, bo, ai := counters(l.a, aOut), counters(l.b, bIn), counters(l.b, bOut), counters(l.a, aIn)
	if ao.Packets < 5 || bi.Packets != ao.Packets || bo.Packets < 5 || ai.Packets != bo.Packets || ao.Bytes == 0 || ai.Bytes == 0 {
		t.Fatalf("kernel counters after 5 pings: A out %+v, B in %+v, B out %+v, A in %+v", ao, bi, bo, ai)
	}
	t.Logf("after 5 pings: A out %+v, B in %+v, B out %+v, A in %+v", ao, bi, bo, ai)

	waitUntil(t, 10*time.Second, "A's state file", func() bool { _, err := os.Stat(stateFile); return err == nil })

	seq := func(be *Backend, id dp.SAID) uint64 {
		t.Helper()
		s, err := be.OutboundSeq(id)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	replay := func(be *Backend, id dp.SAID) dp.Replay {
		t.Helper()
		r, err := be.ReplayState(id)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// (c) A dies without a word, twice. The first time its record holds
	// no Child SA counter yet; the second time it holds the one written
	// right after the first restore, stale by the pings since.
	var bSeq2, bSeq0 uint64
	var aWin2 dp.Replay
	for round := 1; round <= 2; round++ {
		// A's SAs stay in the kernel, which goes on carrying the
		// tunnel: these packets are in no record.
		a.kill()
		ping(3)
		var aWin0 dp.Replay
		var aSeq0 uint64
		bSeq0, aWin0, aSeq0 = seq(l.b, bOut), replay(l.a, aIn), seq(l.a, aOut)
		if aWin0.Seq != bSeq0 {
			t.Fatalf("round %d: before the restart A's window top is %d, B sent up to %d", round, aWin0.Seq, bSeq0)
		}

		// A comes back from its stale record and resynchronises.
		a = l.startHike(bin, l.nsA, "A", confA)
		waitUntil(t, 30*time.Second, "A to resync", func() bool { return a.has(`msg="RFC 6311 sync complete"`) })
		m := regexp.MustCompile(`RFC 6311 sync started.*replay_delta=(\d+)`).FindStringSubmatch(a.out.String())
		if m == nil {
			t.Fatalf("round %d: A's sync request carried no replay counter delta", round)
		}
		delta, _ := strconv.ParseUint(m[1], 10, 64)
		if delta == 0 {
			t.Fatalf("round %d: A sent a zero replay counter delta", round)
		}
		waitUntil(t, 10*time.Second, "B to apply the delta", func() bool {
			return strings.Count(b.out.String(), `msg="replay counter synced"`) == round
		})
		if in, out, _, _ := childSPIs(t, bin, filepath.Join(dir, "a.sock")); in != spiIn || out != spiOut {
			t.Fatalf("round %d: restored Child SA is %08x/%08x, was %08x/%08x", round, in, out, spiIn, spiOut)
		}

		// GETAE: B's outbound counter jumped by at least the delta, A's
		// inbound window top by exactly the delta, and A's own outbound
		// counter by outbound_jump past what its kernel had sent.
		bSeq1, aWin1, aSeq1 := seq(l.b, bOut), replay(l.a, aIn), seq(l.a, aOut)
		t.Logf("round %d, delta %#x: B out seq %#x -> %#x, A in window top %#x -> %#x, A out seq %#x -> %#x",
			round, delta, bSeq0, bSeq1, aWin0.Seq, aWin1.Seq, aSeq0, aSeq1)
		if bSeq1 < bSeq0+delta {
			t.Fatalf("B's outbound sequence number %#x, want >= %#x + delta %#x", bSeq1, bSeq0, delta)
		}
		if aWin1.Seq != aWin0.Seq+delta {
			t.Fatalf("A's inbound window top %#x, want %#x + delta %#x", aWin1.Seq, aWin0.Seq, delta)
		}
		if aSeq1 < aSeq0+outboundJump {
			t.Fatalf("A's outbound sequence number %#x, want >= %#x + outbound_jump %#x", aSeq1, aSeq0, outboundJump)
		}

		ping(5)
		bSeq2, aWin2 = seq(l.b, bOut), replay(l.a, aIn)
		if bSeq2 != bSeq1+5 || aWin2.Seq != bSeq2 {
			t.Fatalf("after 5 more pings B sent up to %#x (want %#x), A's window top is %#x", bSeq2, bSeq1+5, aWin2.Seq)
		}
		if round == 1 {
			waitUntil(t, 5*time.Second, "A to rewrite its record", func() bool { return a.has(`msg="state restored"`) })
		}
	}

	// No old sequence number is accepted. First inside A's window: B
	// resends numbers A has already received, a replay by the book.
	stats := func() (uint32, uint32, uint32) {
		t.Helper()
		w, r, i, err := l.a.saStats(aIn)
		if err != nil {
			t.Fatal(err)
		}
		return w, r, i
	}
	w0, r0, i0 := stats()
	if err := l.b.SetOutboundSeq(bOut, bSeq2-3); err != nil {
		t.Fatal(err)
	}
	if err := l.ping(ia, ib, 1, time.Second); err == nil {
		t.Fatal("A accepted a sequence number it had already received")
	}
	w1, r1, i1 := stats()
	if r1 != r0+1 {
		t.Fatalf("A's replay drops %d -> %d (window %d -> %d, ICV %d -> %d), want one more", r0, r1, w0, w1, i0, i1)
	}
	// Then the numbers B used before the sync: far below the window. With
	// ESN the receiver takes them for the next 2^32 block (RFC 4303
	// Appendix A2.2), so they fail the ICV check instead: dropped as well.
	if err := l.b.SetOutboundSeq(bOut, bSeq0-3); err != nil {
		t.Fatal(err)
	}
	if err := l.ping(ia, ib, 1, time.Second); err == nil {
		t.Fatal("A accepted a sequence number from before the sync")
	}
	w2, r2, i2 := stats()
	if w2+r2+i2 != w1+r1+i1+1 {
		t.Fatalf("A's drops (window, replay, ICV) %d/%d/%d -> %d/%d/%d, want one more", w1, r1, i1, w2, r2, i2)
	}
	t.Logf("A's kernel dropped the reused numbers: window/replay/ICV %d/%d/%d -> %d/%d/%d", w0, r0, i0, w2, r2, i2)
	if aWin3 := replay(l.a, aIn); aWin3.Seq != aWin2.Seq {
		t.Fatalf("A's window top moved to %#x on dropped packets", aWin3.Seq)
	}
	if err := l.b.SetOutboundSeq(bOut, bSeq2+10); err != nil {
		t.Fatal(err)
	}
	ping(3)
	t.Logf("A (cluster role):\n%s", grep(a.out.String(), "restored", "RFC 6311", "data plane"))

	// An orderly restart: the record is exact, so nothing is synced, and
	// the SAs the kernel kept go on with their counters where they were.
	aSeq, aTop := seq(l.a, aOut), replay(l.a, aIn).Seq
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(20 * time.Second):
		t.Fatal("A did not stop on SIGTERM")
	}
	a = l.startHike(bin, l.nsA, "A", confA)
	waitUntil(t, 30*time.Second, "A to restore", func() bool { return a.has(`msg="state restored"`) })
	if !a.has("clean=true") || a.has("RFC 6311 sync started") {
		t.Fatalf("orderly restart:\n%s", grep(a.out.String(), "restored", "RFC 6311"))
	}
	if in, out, _, _ := childSPIs(t, bin, filepath.Join(dir, "a.sock")); in != spiIn || out != spiOut {
		t.Fatalf("after an orderly restart the Child SA is %08x/%08x, was %08x/%08x", in, out, spiIn, spiOut)
	}
	ping(3)
	if got, top := seq(l.a, aOut), replay(l.a, aIn).Seq; got != aSeq+3 || top != aTop+3 {
		t.Fatalf("after an orderly restart and 3 pings A's outbound seq %#x (want %#x), inbound top %#x (want %#x)", got, aSeq+3, top, aTop+3)
	}
	t.Logf("B (peer role):\n%s", grep(b.out.String(), "RFC 6311", "replay counter"))
}

func grep(s string, subs ...string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(line, sub) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

func hikeBin(t *testing.T) string {
	bin := os.Getenv("HIKE_BIN")
	if bin == "" {
		if os.Getenv("HIKE_QEMU") != "" || os.Getenv("CI") == "true" {
			t.Fatal("HIKE_BIN is not set: the harness did not provide the hike binary")
		}
		t.Skip("HIKE_BIN (a hike binary) not set")
	}
	return bin
}

func newPSK() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// writeHikeConf writes name.yaml for gateway a (192.168.100.1, the
// initiator) or b (192.168.100.2) of the lab: dataplane xfrm, PSK,
// one site-to-site connection with an AES-GCM ESN Child SA and RFC 6311.
func writeHikeConf(t *testing.T, dir, psk, name, peer, localTS, remoteTS, extra string, jump uint64) string {
	t.Helper()
	self, other, start := "192.168.100.1", "b", "        start_action: start\n"
	if name == "b" {
		self, other, start = "192.168.100.2", "a", ""
	}
	path := filepath.Join(dir, name+".yaml")
	text := fmt.Sprintf(`listen:
  addrs: [%[2]s]
control_socket: %[1]s/%[3]s.sock
dataplane: {kind: xfrm}
%[7]ssecrets:
  site:
    psk: %[8]q
log:
  level: debug
connections:
  - name: site
    local: {id: %[3]s.example, auth: psk}
    remote: {addrs: %[4]s, id: %[9]s.example}
    psk: site
    ike: {proposals: [aes256-sha256-ecp256]}
    dpd: {delay: 30s}
    rfc6311: {message_id_sync: true, replay_counter_sync: true, outbound_jump: %[11]d}
    children:
      - name: net
        local_ts: [%[5]s]
        remote_ts: [%[6]s]
        esp: {proposals: [aes256gcm16-esn]}
%[10]s`, dir, self, name, peer, localTS, remoteTS, extra, psk, other, start, jump)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// withoutKeys drops the algorithm lines, which carry the keys, from `ip
// xfrm state` output.
func withoutKeys(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		switch strings.Fields(line + " x")[0] {
		case "aead", "enc", "auth", "auth-trunc", "comp":
			continue
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

// TestKernelAddSAsAdopts: installing an SA the kernel already holds with
// the same keys keeps it and its counters (a restarted daemon reinstalls
// what it left behind); the same ID with other keys still fails.
func TestKernelAddSAsAdopts(t *testing.T) {
	l := newLab(t)
	c := tunnelCase{alg: dp.Algorithm{Encr: dp.EncrAESGCM16, EncrKeyBits: 128}, esn: true, window: 64}
	aOut, aIn, ia, ib := l.child(40, c)
	if err := l.ping(ia, ib, 2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	ek, _, _ := c.alg.KeyLen()
	pair := dp.SAPair{
		In:  dp.SA{ID: aIn, ReqID: 140, Alg: c.alg, EncrKey: key(ek, 0x20), ESN: true, ReplayWindow: 64},
		Out: dp.SA{ID: aOut, ReqID: 140, Alg: c.alg, EncrKey: key(ek, 0x10), ESN: true, Lifetime: dp.Lifetime{SoftPackets: 1000, HardPackets: 2000}},
	}
	if err := l.a.AddSAs(pair); err != nil {
		t.Fatalf("AddSAs of the installed pair: %v", err)
	}
	if seq, err := l.a.OutboundSeq(aOut); err != nil || seq != 2 {
		t.Fatalf("adopted outbound SA at %d, %v; want its 2 packets kept", seq, err)
	}
	if r, err := l.a.ReplayState(aIn); err != nil || r.Seq != 2 {
		t.Fatalf("adopted inbound SA %+v, %v; want its window top 2 kept", r, err)
	}
	if err := l.ping(ia, ib, 1, 5*time.Second); err != nil {
		t.Fatalf("after adopting: %v", err)
	}
	other := pair
	other.Out.EncrKey = key(ek, 0x77)
	if err := l.a.AddSAs(other); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("AddSAs with other keys under the same ID: %v, want EEXIST", err)
	}
	if err := l.ping(ia, ib, 1, 5*time.Second); err != nil {
		t.Fatalf("the refused pair disturbed the installed one: %v", err)
	}
}

// TestKernelHikeSelectorsCoverGateways: traffic selectors that contain the
// gateways' own addresses (host-to-host protection of 192.168.100.1 <->
// .2). IKE must stay outside the Child SA it negotiates, which takes the
// bypass policies on the IKE ports; all other traffic between the hosts
// goes through ESP.
func TestKernelHikeSelectorsCoverGateways(t *testing.T) {
	bin := hikeBin(t)
	l := newLab(t)
	dir := t.TempDir()
	psk := newPSK()
	confA := writeHikeConf(t, dir, psk, "a", "[192.168.100.2]", "192.168.100.1/32", "192.168.100.2/32", "", 1<<24)
	confB := writeHikeConf(t, dir, psk, "b", "any", "192.168.100.2/32", "192.168.100.1/32", "", 1<<24)
	b := l.startHike(bin, l.nsB, "B", confB)
	var a *hikeProc
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*hikeProc{a, b} {
				if p != nil {
					t.Logf("%s output:\n%s", p.name, grep(p.out.String(), "level=INFO", "level=WARN", "level=ERROR"))
				}
			}
		}
	})
	waitUntil(t, 20*time.Second, "B to listen", func() bool { return b.has(`msg=listening`) })
	a = l.startHike(bin, l.nsA, "A", confA)
	waitUntil(t, 30*time.Second, "the tunnel", func() bool { return a.has(`msg="Child SA established"`) })
	_, spiOut, _, _ := childSPIs(t, bin, filepath.Join(dir, "a.sock"))
	aOut := dp.SAID{SPI: spiOut, Src: l.outerA, Dst: l.outerB}
	if err := l.ping(l.outerA, l.outerB, 3, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if c, err := l.a.Counters(aOut); err != nil || c.Packets != 3 {
		t.Fatalf("A's outbound SA counted %+v, %v; want the 3 pings and no IKE", c, err)
	}
	// IKE still flows in the clear once the Child SA is up: a request
	// with an answer, here an RFC 6311 sync started by hand, completes
	// without the Child SA counting a packet.
	raw, err := exec.Command(bin, "sa", "list", "--json", "--socket", filepath.Join(dir, "a.sock")).Output()
	var sas []struct {
		ID string `json:"id"`
	}
	if err != nil || json.Unmarshal(raw, &sas) != nil || len(sas) != 1 {
		t.Fatalf("hike sa list: %v\n%s", err, raw)
	}
	if out, err := exec.Command(bin, "sa", "resync", sas[0].ID, "--socket", filepath.Join(dir, "a.sock")).CombinedOutput(); err != nil {
		t.Fatalf("hike sa resync: %v\n%s", err, out)
	}
	if c, err := l.a.Counters(aOut); err != nil || c.Packets != 3 {
		t.Fatalf("A's outbound SA counted %+v, %v after IKE traffic; want only the 3 pings", c, err)
	}
}
