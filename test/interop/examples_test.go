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

// TestExampleRemoteAccessCert runs examples/ra-cert.yaml (paths made
// absolute, the control socket and state file moved into the test's
// directory) against a strongSwan client with the example PKI's client
// certificate: certificate authentication both ways, a virtual IP from the
// example's pool, traffic through the full-tunnel gateway.
func TestExampleRemoteAccessCert(t *testing.T) {
	e := newEnv(t, 1)
	pki, err := filepath.Abs(filepath.Join("..", "..", "examples", "pki"))
	must(t, err)
	example, err := os.ReadFile(filepath.Join(pki, "..", "ra-cert.yaml"))
	must(t, err)
	cfg := strings.NewReplacer("control_socket: /run/hike/control.sock", "control_socket: $DIR/control.sock",
		"path: /var/lib/hike/sa-records", "path: $DIR/sa-records",
		" pki/", " "+pki+"/").Replace(string(example))
	must(t, e.gw.AddAddr("lo", netip.MustParsePrefix("10.30.0.1/32")))
	e.startHike(cfg)
	c := e.clients[0]
	dir := filepath.Join(e.dir, "swan1")
	for _, f := range []struct{ src, dst string }{
		{"client.pem", "x509/client.pem"}, {"client.key", "private/client.key"}, {"ca.pem", "x509ca/ca.pem"},
	} {
		data, err := os.ReadFile(filepath.Join(pki, f.src))
		must(t, err)
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, f.dst)), 0o700))
		must(t, os.WriteFile(filepath.Join(dir, f.dst), data, 0o600))
	}
	d := e.startSwan(1, fmt.Sprintf(`connections {
    vpn {
        version = 2
        local_addrs = %s
        remote_addrs = %s
        vips = 0.0.0.0
        proposals = aes256gcm16-prfsha256-x25519
        local {
            auth = pubkey
            certs = client.pem
            id = "C=CH, O=hike EXAMPLE ONLY - DO NOT USE, CN=alice@example.com"
        }
        remote {
            auth = pubkey
            id = vpn.example.com
        }
        children {
            corp {
                remote_ts = 10.30.0.1/32
                esp_proposals = aes256gcm16
            }
        }
    }
}
`, c.outer, gwAddr))
	if err := d.Initiate("corp"); err != nil {
		t.Fatal(err)
	}
	vips := swanVIPs(t, d)
	if len(vips) != 1 || !strings.HasPrefix(vips[0], "10.20.0.") {
		t.Fatalf("virtual IPs %v, want one from the example's pool 10.20.0.10-250", vips)
	}
	waitFor(t, 5*time.Second, "the virtual IP on the client", func() bool {
		out, _ := c.ns.Run("ip", "-o", "addr")
		return strings.Contains(string(out), vips[0]+"/")
	})
	pingFrom(t, c.ns, vips[0], "10.30.0.1", 3)
}
