package interop

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/netlab"
)

// IPv6 addresses of TestStrongSwanIPv6, next to the IPv4 ones of newEnv.
const (
	gwAddr6     = "fd00:99::1"
	clientAddr6 = "fd00:99::2"
	gwInner6    = "fd00:97::1"
	clientIn6   = "fd00:98::1"
)

const hikeIPv6Conf = `listen:
  addrs: [10.99.0.1, "` + gwAddr6 + `"]
control_socket: $DIR/control.sock
log:
  level: debug
secrets:
  clients:
    psk: "interop-test-pre-shared-key"
connections:
  - name: v6
    local:
      id: gw.example
      auth: psk
    remote:
      addrs: any
      id: "*.example"
    psk: clients
    ike:
      proposals: [aes256gcm16-prfsha256-x25519, aes256-sha256-ecp256]
    children:
      - name: net
        local_ts: ["fd00:97::/64"]
        remote_ts: ["fd00:98::/64"]
        esp:
          proposals: [aes256gcm16, aes256-sha256]
`

func swanIPv6Conf(ike, esp string) string {
	return fmt.Sprintf(`connections {
    gw {
        version = 2
        local_addrs = %s
        remote_addrs = %s
        proposals = %s
        local {
            auth = psk
            id = client-v6.example
        }
        remote {
            auth = psk
            id = %%any
        }
        children {
            net {
                local_ts = %s/128
                remote_ts = fd00:97::/64
                esp_proposals = %s
            }
        }
    }
}
secrets {
    ike-gw {
        secret = "interop-test-pre-shared-key"
    }
}
`, clientAddr6, gwAddr6, ike, clientIn6, esp)
}

// tcpTransferBetween sends size random bytes over TCP from src in ns to dst
// in the gateway and checks that the receiver saw exactly those bytes.
// Either address family.
func (e *env) tcpTransferBetween(ns *netlab.NS, src, dst string, size int) {
	e.t.Helper()
	port := 5001 + int(labSeq.Add(1))
	fam := "socket.AF_INET"
	if strings.Contains(dst, ":") {
		fam = "socket.AF_INET6"
	}
	recv, err := e.gw.Start("sink", "", "python3", "-c", fmt.Sprintf(`
import socket, hashlib
s = socket.socket(%s); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("%s", %d)); s.listen(1); s.settimeout(30)
print("listening", flush=True)
c, _ = s.accept(); c.settimeout(30); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(65536)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest(), flush=True)
`, fam, dst, port))
	if err != nil {
		e.t.Fatal(err)
	}
	// Python takes its time to start on a loaded machine: connect only
	// once the sink listens.
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(recv.Out.String(), "listening"); {
		if time.Now().After(deadline) || recv.Exited() {
			e.t.Fatalf("TCP sink did not start listening: %q", recv.Out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	send, err := ns.Start("source", "", "python3", "-c", fmt.Sprintf(`
import socket, hashlib, os
data = os.urandom(%d)
s = socket.create_connection(("%s", %d), timeout=30, source_address=("%s", 0))
s.sendall(data); s.close()
print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
`, size, dst, port, src))
	if err != nil {
		e.t.Fatal(err)
	}
	serr, rerr := send.Wait(), recv.Wait()
	sent := strings.TrimSpace(send.Out.String())
	got := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(recv.Out.String()), "listening"))
	if serr != nil || rerr != nil || sent == "" || sent != got {
		e.t.Fatalf("TCP transfer %s -> %s: sender %q (%v), receiver %q (%v)", src, dst, sent, serr, got, rerr)
	}
}

// TestStrongSwanIPv6: IKE over an IPv6 address pair and a Child SA with
// IPv6 traffic selectors, for an AEAD and a CBC+HMAC suite: ping6 and a
// checked TCP transfer through the tunnel, ESP counted on both sides. With
// an explicit listen list the IPv6 address must be in it; the default
// (wildcard) sockets must answer from the address the peer used.
func TestStrongSwanIPv6(t *testing.T) {
	for _, tc := range []struct {
		name, ike, esp string
		wildcard       bool // hike listens on the default [0.0.0.0, "::"]
	}{
		{"x25519-aes256gcm", "aes256gcm16-prfsha256-x25519", "aes256gcm16", false},
		{"ecp256-aes256cbc-sha256", "aes256-sha256-ecp256", "aes256-sha256", false},
		{"wildcard-listen", "aes256gcm16-prfsha256-x25519", "aes256gcm16", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1)
			c := e.clients[0]
			must(t, e.gw.AddAddr("br0", netip.MustParsePrefix(gwAddr6+"/64")))
			must(t, e.gw.AddAddr("lo", netip.MustParsePrefix(gwInner6+"/128")))
			must(t, c.ns.AddAddr("eth0", netip.MustParsePrefix(clientAddr6+"/64")))
			must(t, c.ns.AddAddr("lo", netip.MustParsePrefix(clientIn6+"/128")))
			conf, listen := hikeIPv6Conf, "["+gwAddr6+"]:4500"
			if tc.wildcard {
				conf, listen = conf[strings.Index(conf, "control_socket"):], "[::]:4500"
			}
			e.startHike(conf)
			// startHike returns at the first socket; the IPv6 ones follow.
			waitFor(t, 5*time.Second, "hike to listen on "+listen, func() bool {
				return strings.Contains(e.hike.Out.String(), "addr="+listen)
			})
			d := e.startSwan(1, swanIPv6Conf(tc.ike, tc.esp))
			if err := d.Initiate("net"); err != nil {
				t.Fatal(err)
			}
			sas, err := d.SAs()
			if err != nil || len(sas) != 1 || sas[0].RemoteHost != gwAddr6 || len(sas[0].Children) != 1 {
				t.Fatalf("strongSwan SAs: %+v %v", sas, err)
			}
			ch := sas[0].Children[0]
			if strings.Join(ch.LocalTS, " ") != clientIn6+"/128" || strings.Join(ch.RemoteTS, " ") != "fd00:97::/64" {
				t.Fatalf("negotiated selectors %v === %v", ch.LocalTS, ch.RemoteTS)
			}
			if est := grepLines(e.hike.Out.String(), `msg="IKE SA established"`); !strings.Contains(est, "remote=["+clientAddr6+"]:") {
				t.Fatalf("hike's SA is not on the IPv6 pair: %s", est)
			}
			pingFrom(t, c.ns, clientIn6, gwInner6, 5)
			e.tcpTransferBetween(c.ns, clientIn6, gwInner6, 2<<20)
			sas, err = d.SAs()
			if err != nil || len(sas) != 1 || len(sas[0].Children) != 1 {
				t.Fatalf("%+v %v", sas, err)
			}
			if ch := sas[0].Children[0]; ch.PacketsIn == "0" || ch.PacketsOut == "0" {
				t.Fatalf("strongSwan counted no ESP: in %s out %s", ch.PacketsIn, ch.PacketsOut)
			}
		})
	}
}
