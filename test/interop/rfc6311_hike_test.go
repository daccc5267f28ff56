package interop

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/netlab"
)

// TestRFC6311HikeToHike: both roles of RFC 6311 between two hike gateways
// over real sockets, with ESP through their userspace data planes. Gateway
// A initiates a site-to-site tunnel to B (both advertise message ID and
// replay counter sync, ESP with ESN); traffic flows; A is killed and
// restarted from its stale state file and resynchronises with one MID-0
// request carrying N(16422) and N(16423); B moves its outbound ESP counter
// by the delta and A its inbound window; traffic flows again, and an ESP
// packet captured before the kill and replayed afterwards is rejected.
func TestRFC6311HikeToHike(t *testing.T) {
	requireLab(t)
	requireTool(t, "tcpdump")
	lab, err := netlab.New(fmt.Sprintf("hh%d", os.Getpid()%1000))
	must(t, err)
	dir := t.TempDir()
	var procA, procB *netlab.Proc
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*netlab.Proc{procA, procB} {
				if p != nil {
					t.Logf("%s:\n%s", p.Name, tailLines(p.Out.String(), 60))
				}
			}
		}
		lab.Close()
	})
	a, err := lab.AddNS("a")
	must(t, err)
	b, err := lab.AddNS("b")
	must(t, err)
	must(t, lab.Veth(a, "eth0", netip.MustParsePrefix("10.77.0.1/24"), b, "eth0", netip.MustParsePrefix("10.77.0.2/24")))
	must(t, a.AddAddr("lo", netip.MustParsePrefix("10.71.0.1/32")))
	must(t, b.AddAddr("lo", netip.MustParsePrefix("10.72.0.1/32")))

	key := make([]byte, 32)
	rand.Read(key)
	must(t, os.WriteFile(filepath.Join(dir, "a.key"), []byte(hex.EncodeToString(key)), 0o600))
	common := `secrets:
  site:
    psk: "site-to-site-test-pre-shared-key"
log:
  level: debug
`
	confA := fmt.Sprintf(`listen:
  addrs: [10.77.0.1]
control_socket: %[1]s/a.sock
metrics: 10.77.0.1:9810
state:
  path: %[1]s/a.state
  key_file: %[1]s/a.key
%[2]sconnections:
  - name: site
    local: {id: a.example, auth: psk}
    remote: {addrs: [10.77.0.2], id: b.example}
    psk: site
    ike: {proposals: [aes256-sha256-ecp256]}
    dpd: {delay: 30s}
    rfc6311: {message_id_sync: true, replay_counter_sync: true}
    children:
      - name: net
        local_ts: [10.71.0.0/16]
        remote_ts: [10.72.0.0/16]
        esp: {proposals: [aes256gcm16-esn]}
        start_action: start
`, dir, common)
	confB := fmt.Sprintf(`listen:
  addrs: [10.77.0.2]
control_socket: %[1]s/b.sock
metrics: 10.77.0.2:9810
%[2]sconnections:
  - name: site
    local: {id: b.example, auth: psk}
    remote: {addrs: any, id: a.example}
    psk: site
    ike: {proposals: [aes256-sha256-ecp256]}
    dpd: {delay: 30s}
    rfc6311: {message_id_sync: true, replay_counter_sync: true}
    children:
      - name: net
        local_ts: [10.72.0.0/16]
        remote_ts: [10.71.0.0/16]
        esp: {proposals: [aes256gcm16-esn]}
`, dir, common)
	must(t, os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(confA), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "b.yaml"), []byte(confB), 0o600))
	start := func(ns *netlab.NS, name string) *netlab.Proc {
		p, err := ns.Start("hike-"+name, filepath.Join(dir, name+".log"), hikeBin, "serve", "-c", filepath.Join(dir, name+".yaml"))
		must(t, err)
		return p
	}
	procB = start(b, "b")
	waitFor(t, 10*time.Second, "B to listen", func() bool { return strings.Contains(procB.Out.String(), "listening") })
	procA = start(a, "a")
	waitFor(t, 15*time.Second, "the tunnel", func() bool {
		return strings.Contains(procA.Out.String(), `msg="Child SA established"`)
	})
	ping := func(n int) {
		t.Helper()
		out, err := a.Run("ping", "-n", "-q", "-c", strconv.Itoa(n), "-i", "0.2", "-W", "2", "-I", "10.71.0.1", "10.72.0.1")
		if err != nil || !strings.Contains(string(out), fmt.Sprintf("%d received", n)) {
			for _, m := range []struct {
				ns   *netlab.NS
				addr string
			}{{a, "10.77.0.1"}, {b, "10.77.0.2"}} {
				o, _ := m.ns.Run("python3", "-c", "import urllib.request;print(urllib.request.urlopen('http://"+m.addr+":9810/metrics').read().decode())")
				t.Logf("%s data plane:\n%s", m.ns.Name, grepLines(string(o), "hike_dataplane"))
			}
			t.Fatalf("ping through the tunnel: %v\n%s", err, out)
		}
	}
	// Capture ESP from B while traffic flows: these are the packets a
	// replay attack would re-inject after the failover. Without a NAT
	// between the gateways ESP travels as IP protocol 50.
	pcap := filepath.Join(dir, "esp.pcap")
	td, err := a.Start("tcpdump", "", "tcpdump", "-U", "-i", "eth0", "-w", pcap, "-c", "4",
		"ip proto 50 and src host 10.77.0.2")
	must(t, err)
	time.Sleep(500 * time.Millisecond)
	ping(5)
	waitFor(t, 10*time.Second, "captured ESP", td.Exited)
	captured := espFromPcap(t, pcap)
	waitFor(t, 5*time.Second, "A's state file", func() bool {
		_, err := os.Stat(filepath.Join(dir, "a.state"))
		return err == nil
	})
	ping(20) // the record is now older than these packets

	must(t, procA.Signal(syscall.SIGKILL))
	procA.Wait()
	procA = start(a, "a")
	waitFor(t, 15*time.Second, "A to resync", func() bool {
		return strings.Contains(procA.Out.String(), `msg="RFC 6311 sync complete"`)
	})
	if !regexp.MustCompile(`RFC 6311 sync started.*replay_delta=[1-9]`).MatchString(procA.Out.String()) {
		t.Fatal("A's sync request carried no replay counter delta")
	}
	waitFor(t, 5*time.Second, "B to apply the delta", func() bool {
		return strings.Contains(procB.Out.String(), `msg="replay counter synced"`)
	})
	if !strings.Contains(procB.Out.String(), `msg="RFC 6311 message ID sync answered"`) {
		t.Fatal("B did not answer as peer")
	}
	ping(5)

	// Replay one captured packet from B's address: A must reject it, not
	// deliver it. With ESN a number that far below the window is read as
	// belonging to the next 2^32 block (RFC 4303 App. A2.2), so it fails
	// the ICV check rather than the window check: either way it is dropped.
	rejected := func() float64 {
		return metric(t, a, `hike_dataplane_drops_total{reason="replay"}`) + metric(t, a, `hike_dataplane_drops_total{reason="auth"}`)
	}
	before, delivered := rejected(), metric(t, a, `hike_dataplane_packets_total{direction="in"}`)
	_, err = b.Run("python3", "-c", fmt.Sprintf(`
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50)
s.bind(("10.77.0.2", 0))
s.sendto(bytes.fromhex("%s"), ("10.77.0.1", 0))
`, hex.EncodeToString(captured)))
	must(t, err)
	waitFor(t, 5*time.Second, "the replayed packet to be dropped", func() bool { return rejected() == before+1 })
	if got := metric(t, a, `hike_dataplane_packets_total{direction="in"}`); got != delivered {
		t.Fatalf("A delivered %v packets while only a replay arrived", got-delivered)
	}
	ping(3)
	t.Logf("A (cluster role):\n%s", grepLines(procA.Out.String(), "restored", "RFC 6311"))
	t.Logf("B (peer role):\n%s", grepLines(procB.Out.String(), "RFC 6311", "replay counter"))
}

// espFromPcap returns the IP payload (an ESP packet) of the first packet of
// an Ethernet pcap file.
func espFromPcap(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil || len(data) < 24+16 {
		t.Fatalf("pcap: %v (%d bytes)", err, len(data))
	}
	if binary.LittleEndian.Uint32(data) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(data[20:]) != 1 {
		t.Fatal("pcap: not a little-endian Ethernet capture")
	}
	rec := data[24:]
	n := int(binary.LittleEndian.Uint32(rec[8:]))
	pkt := rec[16 : 16+n]
	ip := pkt[14:]
	ihl := int(ip[0]&0x0f) * 4
	return append([]byte(nil), ip[ihl:]...)
}

// metric scrapes one sample from hike's metrics endpoint inside ns.
func metric(t *testing.T, ns *netlab.NS, name string) float64 {
	t.Helper()
	out, err := ns.Run("python3", "-c", "import urllib.request;print(urllib.request.urlopen('http://10.77.0.1:9810/metrics').read().decode())")
	if err != nil {
		t.Fatalf("scraping metrics: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, name+" ") {
			v, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(l, name)), 64)
			return v
		}
	}
	return 0
}
