package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/netlab"
	"github.com/hike-vpn/hike/internal/netlab/swan"
)

var labSeq atomic.Int32

// env is one gateway namespace running hike and client namespaces running
// charon, on one link each: gw has 10.99.0.1/16 on a bridge, client i has
// 10.99.100.i+1/16 outside and 10.98.0.i+1/32 inside; behind hike is
// 10.97.0.1/32 (on gw's loopback).
type env struct {
	t       *testing.T
	lab     *netlab.Lab
	gw      *netlab.NS
	dir     string
	hike    *netlab.Proc
	clients []*client
	dpd     string // hike's DPD delay in $DPD
}

type client struct {
	ns    *netlab.NS
	outer netip.Addr
	inner netip.Addr
	swan  *swan.Daemon
}

const (
	gwAddr    = "10.99.0.1"
	gwInner   = "10.97.0.1"
	bridgeNet = 16
)

func newEnv(t *testing.T, clients int) *env {
	t.Helper()
	requireLab(t)
	prefix := fmt.Sprintf("hi%d%c", os.Getpid()%100, 'a'+labSeq.Add(1)%26)
	lab, err := netlab.New(prefix)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, lab: lab, dir: t.TempDir(), dpd: "30s"}
	t.Cleanup(func() {
		if t.Failed() {
			e.dumpLogs()
		}
		lab.Close()
	})
	if e.gw, err = lab.AddNS("gw"); err != nil {
		t.Fatal(err)
	}
	must(t, e.gw.Bridge("br0", netip.MustParsePrefix(gwAddr+"/16")))
	must(t, e.gw.AddAddr("lo", netip.MustParsePrefix(gwInner+"/32")))
	for i := 1; i <= clients; i++ {
		ns, err := lab.AddNS(fmt.Sprintf("c%d", i))
		if err != nil {
			t.Fatal(err)
		}
		c := &client{ns: ns,
			outer: netip.AddrFrom4([4]byte{10, 99, byte(100 + (i-1)/250), byte(2 + (i-1)%250)}),
			inner: netip.AddrFrom4([4]byte{10, 98, byte(i / 250), byte(i%250 + 1)})}
		must(t, lab.Attach(e.gw, "br0", fmt.Sprintf("v%d", i), ns, "eth0", netip.PrefixFrom(c.outer, bridgeNet)))
		must(t, ns.AddAddr("lo", netip.PrefixFrom(c.inner, 32)))
		e.clients = append(e.clients, c)
	}
	return e
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// startHike writes cfg (YAML) and runs `hike serve` in the gateway.
func (e *env) startHike(cfg string) {
	e.t.Helper()
	path := filepath.Join(e.dir, "hike.yaml")
	cfg = strings.ReplaceAll(cfg, "$DIR", e.dir)
	cfg = strings.ReplaceAll(cfg, "$DPD", e.dpd)
	must(e.t, os.WriteFile(path, []byte(cfg), 0o600))
	p, err := e.gw.Start("hike", filepath.Join(e.dir, "hike.log"), hikeBin, "serve", "-c", path)
	if err != nil {
		e.t.Fatal(err)
	}
	e.hike = p
	// Ready when it listens.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.Out.String(), "listening") {
		if p.Exited() || time.Now().After(deadline) {
			e.t.Fatalf("hike did not start:\n%s", p.Out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hikeCtl runs a hike client command against the gateway's control socket.
func (e *env) hikeCtl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = ctx
	out, err := e.gw.Run(append([]string{hikeBin}, append(args, "--socket", filepath.Join(e.dir, "control.sock"))...)...)
	return string(out), err
}

// hikeSAs lists hike's SAs through `hike sa list --json`.
func (e *env) hikeSAs() []map[string]any {
	e.t.Helper()
	out, err := e.hikeCtl("sa", "list", "--json")
	if err != nil {
		e.t.Fatalf("hike sa list: %v", err)
	}
	var sas []map[string]any
	if err := json.Unmarshal([]byte(out), &sas); err != nil {
		e.t.Fatalf("hike sa list --json: %v: %s", err, out)
	}
	return sas
}

// startSwan starts charon in client i with a swanctl.conf body.
func (e *env) startSwan(i int, conf string) *swan.Daemon {
	e.t.Helper()
	c := e.clients[i-1]
	d, err := swan.Start(c.ns, filepath.Join(e.dir, fmt.Sprintf("swan%d", i)), conf, swan.Options{LibIPsec: true})
	if err != nil {
		e.t.Fatal(err)
	}
	c.swan = d
	return d
}

func (e *env) dumpLogs() {
	if e.hike != nil {
		e.t.Logf("hike output:\n%s", tailLines(e.hike.Out.String(), 120))
	}
	for i, c := range e.clients {
		if c.swan != nil {
			e.t.Logf("charon %d log:\n%s", i+1, tailLines(c.swan.Log(), 60))
		}
	}
}

func tailLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// swanConf is a strongSwan initiator connection towards the gateway.
func swanConf(c *client, ike, esp, extra string) string {
	return fmt.Sprintf(`connections {
    gw {
        version = 2
        local_addrs = %s
        remote_addrs = %s
        proposals = %s
        %s
        local {
            auth = psk
            id = client-%s.example
        }
        remote {
            auth = psk
            id = %%any
        }
        children {
            net {
                local_ts = %s/32
                remote_ts = 10.97.0.0/16
                esp_proposals = %s
                mode = tunnel
            }
        }
    }
}
secrets {
    ike-gw {
        secret = "interop-test-pre-shared-key"
    }
}
`, c.outer, gwAddr, ike, extra, c.inner, c.inner, esp)
}

// hikePSKConf is a gateway accepting any client with the test PSK.
const hikePSKConf = `listen:
  addrs: [10.99.0.1]
control_socket: $DIR/control.sock
log:
  level: debug
secrets:
  clients:
    psk: "interop-test-pre-shared-key"
connections:
  - name: clients
    local:
      id: gw.example
      auth: psk
    remote:
      addrs: any
      id: "*.example"
    psk: clients
    ike:
      proposals: [aes256gcm16-prfsha256-x25519, aes256-sha256-ecp256, aes128-sha1-modp2048]
    dpd:
      delay: $DPD
    children:
      - name: net
        local_ts: [10.97.0.0/16]
        remote_ts: [10.98.0.0/16]
        esp:
          proposals: [aes256gcm16, aes256-sha256, aes128-sha1]
`
