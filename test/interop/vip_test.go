package interop

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/netlab"
	"github.com/hike-vpn/hike/internal/netlab/swan"
)

// vipAddr is the single address of hike's pool in TestStrongSwanVirtualIP:
// with one address, a second client can only get it once the first has
// given it back.
const vipAddr = "10.96.0.7"

const hikeVIPConf = `listen:
  addrs: [10.99.0.1]
control_socket: $DIR/control.sock
log:
  level: debug
secrets:
  clients:
    psk: "interop-test-pre-shared-key"
pools:
  rw:
    addrs: [` + vipAddr + `]
connections:
  - name: rw
    local:
      id: gw.example
      auth: psk
    remote:
      addrs: any
      id: "*.example"
    psk: clients
    pools: [rw]
    children:
      - name: net
        local_ts: [10.97.0.0/16]
        remote_ts: dynamic
        esp:
          proposals: [aes256gcm16]
`

// swanVIPConf is a road-warrior client asking for a virtual IP, with its
// local selector left to the address it is given.
func swanVIPConf(c *client) string {
	return fmt.Sprintf(`connections {
    gw {
        version = 2
        local_addrs = %s
        remote_addrs = %s
        vips = 0.0.0.0
        proposals = aes256gcm16-prfsha256-x25519
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
                remote_ts = 10.97.0.0/16
                esp_proposals = aes256gcm16
            }
        }
    }
}
secrets {
    ike-gw {
        secret = "interop-test-pre-shared-key"
    }
}
`, c.outer, gwAddr, c.outer)
}

// pingFrom pings target from src in ns and fails unless every echo is
// answered.
func pingFrom(t *testing.T, ns *netlab.NS, src, target string, count int) {
	t.Helper()
	out, err := ns.Run("ping", "-n", "-q", "-c", strconv.Itoa(count), "-i", "0.2", "-W", "2", "-I", src, target)
	if err != nil {
		t.Fatalf("ping %s from %s: %v\n%s", target, src, err, out)
	}
	if !strings.Contains(string(out), fmt.Sprintf("%d received", count)) {
		t.Fatalf("ping %s from %s lost packets:\n%s", target, src, out)
	}
}

// swanVIPs returns the virtual IPs strongSwan lists for its IKE SAs.
func swanVIPs(t *testing.T, d *swan.Daemon) []string {
	t.Helper()
	out, err := d.Swanctl("--list-sas", "--raw")
	if err != nil {
		t.Fatal(err)
	}
	var vips []string
	for _, f := range strings.Split(out, "local-vips=[")[1:] {
		vips = append(vips, strings.Fields(strings.SplitN(f, "]", 2)[0])...)
	}
	return vips
}

// TestStrongSwanVirtualIP: a strongSwan road warrior asks hike for a virtual
// IP (CP CFG_REQUEST), gets the pool's only address, and reaches the
// gateway's inner address from it through the tunnel. While it holds the
// address a second client is refused one; once the first disconnects the
// address is back in the pool and the second gets it; and when the second
// leaves, the first reconnects and gets it again.
func TestStrongSwanVirtualIP(t *testing.T) {
	e := newEnv(t, 2)
	e.startHike(hikeVIPConf)
	d1 := e.startSwan(1, swanVIPConf(e.clients[0]))
	d2 := e.startSwan(2, swanVIPConf(e.clients[1]))

	holds := func(n int, d *swan.Daemon, c *client) {
		t.Helper()
		if err := d.Initiate("net"); err != nil {
			t.Fatalf("client %d: %v", n, err)
		}
		if v := swanVIPs(t, d); len(v) != 1 || v[0] != vipAddr {
			t.Fatalf("client %d: strongSwan lists virtual IPs %v, want [%s]", n, v, vipAddr)
		}
		sas, err := d.SAs()
		if err != nil || len(sas) != 1 || len(sas[0].Children) != 1 ||
			strings.Join(sas[0].Children[0].LocalTS, " ") != vipAddr+"/32" {
			t.Fatalf("client %d: Child SA should cover exactly the virtual IP: %+v %v", n, sas, err)
		}
		hs := e.hikeSAs()
		if len(hs) != 1 || hs[0]["virtual_ip"] != vipAddr {
			t.Fatalf("client %d: hike should list one SA with virtual IP %s: %v", n, vipAddr, hs)
		}
		pingFrom(t, c.ns, vipAddr, gwInner, 3)
	}
	leaves := func(n int, d *swan.Daemon) {
		t.Helper()
		removed := strings.Count(e.hike.Out.String(), `msg="IKE SA removed"`)
		if _, err := d.Swanctl("--terminate", "--ike", "gw"); err != nil {
			t.Fatalf("client %d: %v", n, err)
		}
		waitFor(t, 5*time.Second, "hike to remove the SA", func() bool {
			return strings.Count(e.hike.Out.String(), `msg="IKE SA removed"`) > removed
		})
	}
	assigned := func() int {
		return strings.Count(e.hike.Out.String(), `msg="virtual IP assigned"`)
	}

	holds(1, d1, e.clients[0])
	if !strings.Contains(e.hike.Out.String(), `msg="virtual IP assigned"`) ||
		!strings.Contains(grepLines(e.hike.Out.String(), "virtual IP assigned"), "vip="+vipAddr) {
		t.Fatalf("hike did not log the assignment of %s", vipAddr)
	}

	// The pool is exhausted: the second client must be refused an address.
	if err := d2.Initiate("net"); err == nil {
		t.Fatalf("second client got a tunnel while the pool's only address is leased: %v", swanVIPs(t, d2))
	}
	if !strings.Contains(e.hike.Out.String(), `msg="no virtual IP"`) {
		t.Fatal("hike did not log the refusal")
	}
	if !strings.Contains(d2.Log(), "INTERNAL_ADDRESS_FAILURE") {
		t.Fatal("strongSwan did not see INTERNAL_ADDRESS_FAILURE")
	}
	d2.Swanctl("--terminate", "--ike", "gw")
	// The first client's tunnel is unaffected.
	pingFrom(t, e.clients[0].ns, vipAddr, gwInner, 2)

	leaves(1, d1)
	before := assigned()
	holds(2, d2, e.clients[1])
	if assigned() != before+1 {
		t.Fatal("hike did not log the second assignment")
	}
	leaves(2, d2)
	holds(1, d1, e.clients[0])
}

// TestStrongSwanVirtualIPv6: the same over IPv4 outer addresses with an
// IPv6 pool: the client asks for an IPv6 address (INTERNAL_IP6_ADDRESS),
// gets the pool's first one, and reaches an IPv6 address behind hike from
// it.
func TestStrongSwanVirtualIPv6(t *testing.T) {
	e := newEnv(t, 1)
	c := e.clients[0]
	must(t, e.gw.AddAddr("lo", netip.MustParsePrefix(gwInner6+"/128")))
	conf := strings.NewReplacer("addrs: ["+vipAddr+"]", `addrs: ["fd00:96::/120"]`,
		"local_ts: [10.97.0.0/16]", `local_ts: ["fd00:97::/64"]`).Replace(hikeVIPConf)
	e.startHike(conf)
	d := e.startSwan(1, strings.NewReplacer("vips = 0.0.0.0", "vips = ::",
		"remote_ts = 10.97.0.0/16", "remote_ts = fd00:97::/64").Replace(swanVIPConf(c)))
	if err := d.Initiate("net"); err != nil {
		t.Fatal(err)
	}
	const want = "fd00:96::1" // a CIDR never hands out its network address
	if v := swanVIPs(t, d); len(v) != 1 || v[0] != want {
		t.Fatalf("strongSwan lists virtual IPs %v, want [%s]", v, want)
	}
	if hs := e.hikeSAs(); len(hs) != 1 || hs[0]["virtual_ip"] != want {
		t.Fatalf("hike should list one SA with virtual IP %s: %v", want, hs)
	}
	sas, err := d.SAs()
	if err != nil || len(sas) != 1 || len(sas[0].Children) != 1 ||
		strings.Join(sas[0].Children[0].LocalTS, " ") != want+"/128" {
		t.Fatalf("Child SA should cover exactly the virtual IP: %+v %v", sas, err)
	}
	pingFrom(t, c.ns, want, gwInner6, 3)
}
