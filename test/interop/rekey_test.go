package interop

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/netlab"
	"github.com/hike-vpn/hike/internal/netlab/swan"
)

// spis are the SPIs of the one IKE SA and its one Child SA, as strongSwan
// names them (in and out from strongSwan's side).
type spis struct{ ikeI, ikeR, in, out string }

func (s spis) String() string {
	return fmt.Sprintf("IKE %s_i %s_r, child in %s out %s", s.ikeI, s.ikeR, s.in, s.out)
}

// agreed waits until strongSwan and hike each have exactly one IKE SA with
// one Child SA, the two agree on all SPIs, and cond accepts them.
func (e *env) agreed(d *swan.Daemon, timeout time.Duration, what string, cond func(spis) bool) spis {
	e.t.Helper()
	var last string
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		sas, err := d.SAs()
		// strongSwan keeps the inbound half of a Child SA it did not
		// delete itself for a while after a rekey (delete_rekeyed_delay),
		// listed as DELETED; only INSTALLED ones carry traffic.
		var live []swan.ChildSA
		if err == nil && len(sas) == 1 {
			for _, c := range sas[0].Children {
				if c.State == "INSTALLED" {
					live = append(live, c)
				} else if c.State != "DELETED" {
					live = append(live, c, c) // not settled: fail the check below
				}
			}
		}
		if err != nil || len(sas) != 1 || sas[0].State != "ESTABLISHED" || len(live) != 1 {
			last = fmt.Sprintf("strongSwan: %+v %v", sas, err)
			continue
		}
		s := spis{normSPI(sas[0].SPIi), normSPI(sas[0].SPIr), normSPI(live[0].SPIIn), normSPI(live[0].SPIOut)}
		out, err := e.hikeCtl("sa", "list", "--json")
		if err != nil {
			last = fmt.Sprintf("hike sa list: %v %s", err, out)
			continue
		}
		var h []map[string]any
		if err := json.Unmarshal([]byte(out), &h); err != nil || len(h) != 1 {
			last = fmt.Sprintf("hike has %d IKE SAs: %v", len(h), h)
			continue
		}
		in, outs := hikeChildSPIs(h[0])
		hs := spis{normSPI(fmt.Sprint(h[0]["spi_i"])), normSPI(fmt.Sprint(h[0]["spi_r"])), "", ""}
		if len(in) == 1 {
			hs.in, hs.out = outs[0], in[0] // hike's outbound is strongSwan's inbound
		}
		if hs != s {
			last = fmt.Sprintf("strongSwan %v, hike %v (%d children)", s, hs, len(in))
			continue
		}
		if !cond(s) {
			last = fmt.Sprintf("agreed on %v", s)
			continue
		}
		return s
	}
	e.t.Fatalf("timed out after %v waiting for %s; last: %s", timeout, what, last)
	return spis{}
}

// pinger is a ping running in the background through the tunnel.
type pinger struct {
	p     *netlab.Proc
	count int
}

// startPing sends count echo requests from client c to the gateway's inner
// address, one every 100 ms.
func (e *env) startPing(c *client, count int) *pinger {
	e.t.Helper()
	p, err := c.ns.Start("ping", "", "ping", "-n", "-q", "-c", strconv.Itoa(count), "-i", "0.1", "-W", "1", "-I", c.inner.String(), gwInner)
	if err != nil {
		e.t.Fatal(err)
	}
	return &pinger{p: p, count: count}
}

var received = regexp.MustCompile(`(\d+) received`)

// lost waits for the ping to finish and fails if more than maxLoss echo
// requests went unanswered.
func (pg *pinger) check(t *testing.T, maxLoss int) {
	t.Helper()
	pg.p.Wait()
	m := received.FindStringSubmatch(pg.p.Out.String())
	if m == nil {
		t.Fatalf("ping: %s", pg.p.Out.String())
	}
	n, _ := strconv.Atoi(m[1])
	if pg.count-n > maxLoss {
		t.Fatalf("%d of %d pings lost across the rekey (at most %d allowed):\n%s", pg.count-n, pg.count, maxLoss, pg.p.Out.String())
	}
	t.Logf("%d of %d pings answered across the rekey", n, pg.count)
}

// withRekey inserts rekey settings into hikePSKConf: ike and child are
// YAML lines for the ike section and the child, "" for none.
func withRekey(conf, ike, child string) string {
	if ike != "" {
		conf = strings.Replace(conf, "      proposals: [aes256gcm16-prfsha256-x25519, aes256-sha256-ecp256, aes128-sha1-modp2048]\n",
			"      proposals: [aes256gcm16-prfsha256-x25519, aes256-sha256-ecp256, aes128-sha1-modp2048]\n"+ike, 1)
	}
	if child != "" {
		conf = strings.Replace(conf, "          proposals: [aes256gcm16, aes256-sha256, aes128-sha1]\n",
			"          proposals: [aes256gcm16, aes256-sha256, aes128-sha1]\n"+child, 1)
	}
	return conf
}

// rekeyEnv brings up a tunnel between hike and strongSwan with DPD set for
// dpdBothWays. hikeInitiates picks who creates the IKE SA; ike and child
// are hike's rekey settings (YAML lines at the indentation of the ike
// section's and the child's keys).
func rekeyEnv(t *testing.T, hikeInitiates bool, ike, child string) (*env, *swan.Daemon, spis) {
	e := newEnv(t, 1)
	e.dpd = "2s"
	c := e.clients[0]
	const ikeP, espP = "aes256gcm16-prfsha256-x25519", "aes256gcm16"
	d := e.startSwan(1, swanConf(c, ikeP, espP, "dpd_delay = 3s"))
	if hikeInitiates {
		e.startHike(expand(hikeSiteConf(c), "$IKE", ikeP, "$ESP", espP, "$EXTRA\n", ike, "$CHILD\n", child))
	} else {
		e.startHike(withRekey(hikePSKConf, ike, child))
		if err := d.Initiate("net"); err != nil {
			t.Fatal(err)
		}
	}
	s := e.agreed(d, 10*time.Second, "the tunnel", func(spis) bool { return true })
	e.ping(c, gwInner, 2)
	return e, d, s
}

// afterRekey is what every rekey case checks once the new SAs are agreed:
// the old SPIs are gone from both sides (agreed saw one SA of each kind),
// traffic flows both ways and DPD runs both ways on the current IKE SA.
func afterRekey(t *testing.T, e *env, d *swan.Daemon, pg *pinger) {
	t.Helper()
	pg.check(t, 2)
	c := e.clients[0]
	e.ping(c, gwInner, 3)
	e.pingFromGW(c, 3)
	e.tcpTransfer(c, 256<<10)
	e.dpdBothWays(d)
}

// roles are the two ways the IKE SA under test comes about: strongSwan
// initiates to hike (remote access), or hike to strongSwan (site to site).
var roles = []struct {
	name      string
	initiates bool
}{{"hike-responder", false}, {"hike-initiator", true}}

// TestRekeyChildByStrongSwan: strongSwan rekeys the Child SA; both sides
// switch to the new SPIs and drop the old ones, under a running ping.
func TestRekeyChildByStrongSwan(t *testing.T) {
	for _, role := range roles {
		t.Run(role.name, func(t *testing.T) {
			e, d, before := rekeyEnv(t, role.initiates, "", "")
			pg := e.startPing(e.clients[0], 30)
			time.Sleep(time.Second)
			if _, err := d.Swanctl("--rekey", "--child", "net"); err != nil {
				t.Fatal(err)
			}
			after := e.agreed(d, 10*time.Second, "new Child SA SPIs on both sides", func(s spis) bool {
				return s.in != before.in && s.out != before.out && s.in != before.out && s.out != before.in
			})
			if after.ikeI != before.ikeI || after.ikeR != before.ikeR {
				t.Fatalf("the IKE SA changed with a Child SA rekey: %v -> %v", before, after)
			}
			if !strings.Contains(e.hike.Out.String(), `msg="Child SA rekeyed by peer"`) {
				t.Fatal("hike did not log the rekey")
			}
			waitFor(t, 5*time.Second, "hike to delete the old Child SA at strongSwan's request", func() bool {
				return strings.Contains(e.hike.Out.String(), `msg="peer deletes Child SA"`)
			})
			afterRekey(t, e, d, pg)
		})
	}
}

// TestRekeyIKEByStrongSwan: strongSwan rekeys the IKE SA; the Child SA
// moves to the new IKE SA, the old IKE SA is gone on both sides, and DPD
// runs on the new one.
func TestRekeyIKEByStrongSwan(t *testing.T) {
	for _, role := range roles {
		t.Run(role.name, func(t *testing.T) {
			e, d, before := rekeyEnv(t, role.initiates, "", "")
			pg := e.startPing(e.clients[0], 30)
			time.Sleep(time.Second)
			if _, err := d.Swanctl("--rekey", "--ike", "gw"); err != nil {
				t.Fatal(err)
			}
			after := e.agreed(d, 10*time.Second, "new IKE SA SPIs on both sides", func(s spis) bool {
				return s.ikeI != before.ikeI && s.ikeR != before.ikeR
			})
			if after.in != before.in || after.out != before.out {
				t.Fatalf("the Child SA changed with an IKE SA rekey: %v -> %v", before, after)
			}
			if !strings.Contains(e.hike.Out.String(), `msg="IKE SA rekeyed"`) {
				t.Fatal("hike did not log the rekey")
			}
			waitFor(t, 5*time.Second, "hike to delete the old IKE SA at strongSwan's request", func() bool {
				return strings.Contains(e.hike.Out.String(), `msg="peer deletes IKE SA"`)
			})
			// The new IKE SA is strongSwan's: it initiated the rekey.
			if h := e.hikeSA(); h["initiator"] != false {
				t.Fatalf("hike considers itself the initiator of strongSwan's new IKE SA: %v", h)
			}
			afterRekey(t, e, d, pg)
		})
	}
}

// TestRekeyByHike: hike rekeys Child and IKE SAs on its own timers, both
// as the original responder and as the original initiator of the IKE SA.
func TestRekeyByHike(t *testing.T) {
	for _, role := range roles {
		t.Run("child/"+role.name, func(t *testing.T) {
			// The hard lifetime stays far away: the SIGSTOP of
			// dpdBothWays must not expire an SA that is due a rekey.
			e, d, before := rekeyEnv(t, role.initiates, "", "        rekey_time: 4s\n        lifetime: 1m\n")
			pg := e.startPing(e.clients[0], 40)
			waitFor(t, 8*time.Second, "hike to rekey the Child SA", func() bool {
				return strings.Contains(e.hike.Out.String(), `msg="Child SA rekeyed"`)
			})
			after := e.agreed(d, 5*time.Second, "new Child SA SPIs on both sides", func(s spis) bool {
				return s.in != before.in && s.out != before.out
			})
			if after.ikeI != before.ikeI || after.ikeR != before.ikeR {
				t.Fatalf("the IKE SA changed with a Child SA rekey: %v -> %v", before, after)
			}
			if !strings.Contains(d.Log(), "parsed CREATE_CHILD_SA request") {
				t.Fatal("charon saw no CREATE_CHILD_SA request")
			}
			afterRekey(t, e, d, pg)
			// The new Child SA is due in turn one rekey_time (less jitter)
			// after the first rekey; a loaded machine may take a moment more.
			waitFor(t, 6*time.Second, "hike to rekey the new Child SA too (rekey_time 4s)", func() bool {
				return strings.Count(e.hike.Out.String(), `msg="Child SA rekeyed"`) >= 2
			})
		})
		t.Run("ike/"+role.name, func(t *testing.T) {
			e, d, before := rekeyEnv(t, role.initiates, "      rekey_time: 5s\n      lifetime: 1m\n", "")
			pg := e.startPing(e.clients[0], 50)
			waitFor(t, 8*time.Second, "hike to rekey the IKE SA", func() bool {
				return strings.Contains(e.hike.Out.String(), `msg="IKE SA rekeyed"`)
			})
			after := e.agreed(d, 5*time.Second, "new IKE SA SPIs on both sides", func(s spis) bool {
				return s.ikeI != before.ikeI && s.ikeR != before.ikeR
			})
			if after.in != before.in || after.out != before.out {
				t.Fatalf("the Child SA changed with an IKE SA rekey: %v -> %v", before, after)
			}
			if !strings.Contains(d.Log(), "parsed CREATE_CHILD_SA request") {
				t.Fatal("charon saw no CREATE_CHILD_SA request")
			}
			if h := e.hikeSA(); h["initiator"] != true {
				t.Fatalf("hike is not the initiator of the IKE SA it rekeyed to: %v", h)
			}
			afterRekey(t, e, d, pg)
		})
	}
}
