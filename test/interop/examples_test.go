package interop

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExampleRemoteAccessPSK runs hike with examples/ra-psk.yaml as shipped
// (only the control socket moves into the test's directory, so that tests
// can run side by side) and connects a strongSwan road warrior configured
// the way the example's comments describe: it gets a virtual IP from the
// example's pool and reaches the example's protected network through the
// tunnel. An example that stopped working would fail here.
func TestExampleRemoteAccessPSK(t *testing.T) {
	e := newEnv(t, 1)
	example, err := os.ReadFile(filepath.Join("..", "..", "examples", "ra-psk.yaml"))
	must(t, err)
	cfg := strings.Replace(string(example), "control_socket: /run/hike/control.sock",
		"control_socket: $DIR/control.sock", 1)
	if cfg == string(example) {
		t.Fatal("examples/ra-psk.yaml no longer sets control_socket: /run/hike/control.sock")
	}
	// The example protects 10.0.0.0/16; give the gateway an address there.
	must(t, e.gw.AddAddr("lo", netip.MustParsePrefix("10.0.0.1/32")))
	e.startHike(cfg)
	c := e.clients[0]
	d := e.startSwan(1, fmt.Sprintf(`connections {
    vpn {
        version = 2
        local_addrs = %s
        remote_addrs = %s
        vips = 0.0.0.0
        proposals = aes256gcm16-prfsha256-x25519
        local {
            auth = psk
            id = alice@example.com
        }
        remote {
            auth = psk
            id = vpn.example.com
        }
        children {
            lan {
                remote_ts = 10.0.0.0/16
                esp_proposals = aes256gcm16
            }
        }
    }
}
secrets {
    ike-vpn {
        secret = "example-only-not-a-real-psk-change-me"
    }
}
`, c.outer, gwAddr))
	if err := d.Initiate("lan"); err != nil {
		t.Fatal(err)
	}
	vips := swanVIPs(t, d)
	if len(vips) != 1 || !netip.MustParsePrefix("10.10.0.0/24").Contains(netip.MustParseAddr(vips[0])) {
		t.Fatalf("virtual IPs %v, want one from the example's pool 10.10.0.0/24", vips)
	}
	waitFor(t, 5*time.Second, "the virtual IP on the client", func() bool {
		out, _ := c.ns.Run("ip", "-o", "addr")
		return strings.Contains(string(out), vips[0]+"/")
	})
	pingFrom(t, c.ns, vips[0], "10.0.0.1", 3)
}
