package interop

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/netlab/swan"
)

// hikeSiteConf is a gateway that initiates to client c at start-up: the
// site-to-site role, with strongSwan as the responder. $IKE, $ESP and
// $EXTRA (more keys of the connection, indented as its keys) are left for
// the caller to replace.
func hikeSiteConf(c *client) string {
	return fmt.Sprintf(`listen:
  addrs: [10.99.0.1]
control_socket: $DIR/control.sock
log:
  level: debug
secrets:
  site:
    psk: "interop-test-pre-shared-key"
connections:
  - name: site
    local:
      id: gw.example
      auth: psk
    remote:
      addrs: %s
      id: client-%s.example
    psk: site
    ike:
      proposals: [$IKE]
$EXTRA
    dpd:
      delay: $DPD
    children:
      - name: net
        local_ts: [10.97.0.0/16]
        remote_ts: [%s/32]
        esp:
          proposals: [$ESP]
        start_action: start
$CHILD
`, c.outer, c.inner, c.inner)
}

// expand fills in the placeholders of hikeSiteConf; empty extras vanish.
func expand(conf string, kv ...string) string {
	r := strings.NewReplacer(kv...)
	conf = r.Replace(conf)
	for _, k := range []string{"$EXTRA\n", "$CHILD\n", "$IKE", "$ESP"} {
		conf = strings.ReplaceAll(conf, k, "")
	}
	return conf
}

// pingFromGW pings client c's inner address from the gateway's inner
// address, through the tunnel in the other direction than ping.
func (e *env) pingFromGW(c *client, count int) {
	e.t.Helper()
	if out, ok := e.pingGW(c, count); !ok {
		e.t.Fatalf("ping %s from %s through the tunnel:\n%s", c.inner, gwInner, out)
	}
}

// pingGW is pingFromGW without failing: it reports whether every echo
// request was answered.
func (e *env) pingGW(c *client, count int) (string, bool) {
	out, err := e.gw.Run("ping", "-n", "-q", "-c", strconv.Itoa(count), "-i", "0.2", "-W", "1", "-I", gwInner, c.inner.String())
	return string(out), err == nil && strings.Contains(string(out), fmt.Sprintf("%d received", count))
}

// swanSA waits until charon has exactly one ESTABLISHED IKE SA with
// children Child SAs, all INSTALLED, and returns it.
func (e *env) swanSA(d *swan.Daemon, children int, timeout time.Duration) swan.IKESA {
	e.t.Helper()
	var sa swan.IKESA
	var last []swan.IKESA
	deadline := time.Now().Add(timeout)
	for {
		sas, err := d.SAs()
		last = sas
		if err == nil && len(sas) == 1 && sas[0].State == "ESTABLISHED" && len(sas[0].Children) == children {
			ok := true
			for _, c := range sas[0].Children {
				ok = ok && c.State == "INSTALLED"
			}
			if ok {
				sa = sas[0]
				return sa
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("strongSwan has no established IKE SA with %d Child SAs after %v: %+v (%v)", children, timeout, last, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var (
	emptyInfoReq  = regexp.MustCompile(`parsed INFORMATIONAL request \d+ \[ \]`)
	emptyInfoResp = regexp.MustCompile(`parsed INFORMATIONAL response \d+ \[ \]`)
)

// dpdBothWays checks liveness checks in both directions from now on. It
// needs hike's DPD delay shorter than charon's: first hike probes and
// charon answers (hike's probes keep charon, which only probes a silent
// peer, quiet); then hike is stalled (SIGSTOP) until charon probes, and
// must answer once it runs again.
func (e *env) dpdBothWays(d *swan.Daemon) {
	e.t.Helper()
	off := len(d.Log())
	waitFor(e.t, 8*time.Second, "an empty INFORMATIONAL (DPD) from hike answered by charon", func() bool {
		l := d.Log()[off:]
		return emptyInfoReq.MatchString(l) && strings.Contains(l, "generating INFORMATIONAL response")
	})
	off = len(d.Log())
	must(e.t, e.hike.Signal(syscall.SIGSTOP))
	stopped := true
	defer func() {
		if stopped {
			e.hike.Signal(syscall.SIGCONT)
		}
	}()
	waitFor(e.t, 10*time.Second, "charon to probe the stalled gateway", func() bool {
		return strings.Contains(d.Log()[off:], "sending DPD request")
	})
	must(e.t, e.hike.Signal(syscall.SIGCONT))
	stopped = false
	waitFor(e.t, 10*time.Second, "charon's DPD answered by hike", func() bool {
		return emptyInfoResp.MatchString(d.Log()[off:])
	})
	if strings.Contains(d.Log()[off:], "giving up") {
		e.t.Fatal("charon gave up on hike")
	}
}

// hikeSA returns hike's only IKE SA as `hike sa list --json` shows it.
func (e *env) hikeSA() map[string]any {
	e.t.Helper()
	sas := e.hikeSAs()
	if len(sas) != 1 {
		e.t.Fatalf("hike has %d IKE SAs, want 1: %v", len(sas), sas)
	}
	return sas[0]
}

// hikeChildSPIs lists the inbound and outbound SPIs of an SA's children as
// hike shows them.
func hikeChildSPIs(sa map[string]any) (in, out []string) {
	chs, _ := sa["children"].([]any)
	for _, c := range chs {
		m, _ := c.(map[string]any)
		in = append(in, normSPI(fmt.Sprint(m["spi_in"])))
		out = append(out, normSPI(fmt.Sprint(m["spi_out"])))
	}
	return in, out
}

// normSPI writes an SPI in hex as both tools can be compared in: lower
// case, no 0x, no leading zeros.
func normSPI(s string) string {
	s = strings.TrimPrefix(strings.ToLower(s), "0x")
	s = strings.TrimLeft(s, "0")
	if s == "" {
		return "0"
	}
	return s
}

// TestHikeInitiatorPSK: hike initiates to a strongSwan responder at start-up
// (start_action: start) for each proposal set of the matrix; traffic flows
// both ways and DPD runs both ways.
func TestHikeInitiatorPSK(t *testing.T) {
	for _, tc := range []struct{ name, ike, esp string }{
		{"x25519-aes256gcm", "aes256gcm16-prfsha256-x25519", "aes256gcm16"},
		{"ecp256-aes256cbc-sha256", "aes256-sha256-ecp256", "aes256-sha256"},
		{"modp2048-aes128cbc-sha1", "aes128-sha1-modp2048", "aes128-sha1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1)
			e.dpd = "2s"
			c := e.clients[0]
			d := e.startSwan(1, swanConf(c, tc.ike, tc.esp, "dpd_delay = 3s"))
			e.startHike(expand(hikeSiteConf(c), "$IKE", tc.ike, "$ESP", tc.esp))
			sa := e.swanSA(d, 1, 10*time.Second)
			if !strings.Contains(d.Log(), "received packet: from "+gwAddr+"[500]") ||
				!strings.Contains(d.Log(), "parsed IKE_SA_INIT request 0") {
				t.Fatal("charon did not receive an IKE_SA_INIT request from hike")
			}
			if sa.RemoteID != "gw.example" || sa.LocalID != "client-"+c.inner.String()+".example" {
				t.Fatalf("identities: local %q remote %q", sa.LocalID, sa.RemoteID)
			}
			h := e.hikeSA()
			if h["initiator"] != true || normSPI(fmt.Sprint(h["spi_i"])) != normSPI(sa.SPIi) || normSPI(fmt.Sprint(h["spi_r"])) != normSPI(sa.SPIr) {
				t.Fatalf("hike's SA %v does not match strongSwan's %+v", h, sa)
			}
			e.pingFromGW(c, 5)
			e.ping(c, gwInner, 5)
			e.tcpTransfer(c, 1<<20)
			e.dpdBothWays(d)
			e.pingFromGW(c, 2)
			sas, _ := d.SAs()
			if len(sas) != 1 || sas[0].SPIi != sa.SPIi {
				t.Fatalf("IKE SA changed: %+v", sas)
			}
		})
	}
}

// TestHikeInitiateCLI: `hike sa initiate` starts a connection that has no
// start action, and returns once the IKE SA is up.
func TestHikeInitiateCLI(t *testing.T) {
	e := newEnv(t, 1)
	c := e.clients[0]
	const ikeP, espP = "aes256gcm16-prfsha256-x25519", "aes256gcm16"
	d := e.startSwan(1, swanConf(c, ikeP, espP, ""))
	conf := expand(hikeSiteConf(c), "$IKE", ikeP, "$ESP", espP)
	conf = strings.Replace(conf, "        start_action: start\n", "", 1)
	e.startHike(conf)
	time.Sleep(500 * time.Millisecond)
	if sas, err := d.SAs(); err != nil || len(sas) != 0 {
		t.Fatalf("an SA without start_action or initiate: %+v %v", sas, err)
	}
	out, err := e.hikeCtl("sa", "initiate", "site", "--json")
	if err != nil {
		t.Fatalf("hike sa initiate: %v\n%s", err, out)
	}
	sa := e.swanSA(d, 1, 2*time.Second)
	if !strings.Contains(out, strings.TrimLeft(strings.ToLower(sa.SPIi), "0")) {
		t.Fatalf("hike sa initiate answered %s; strongSwan has IKE SA %s_i", out, sa.SPIi)
	}
	t.Logf("hike sa initiate: %s", strings.Join(strings.Fields(out), " "))
	e.pingFromGW(c, 3)
	e.ping(c, gwInner, 3)
}
