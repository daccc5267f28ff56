package interop

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// ping sends count echo requests from the client's inner address to target
// through the tunnel and fails unless all are answered.
func (e *env) ping(c *client, target string, count int) {
	e.t.Helper()
	out, err := c.ns.Run("ping", "-n", "-q", "-c", strconv.Itoa(count), "-i", "0.2", "-W", "2", "-I", c.inner.String(), target)
	if err != nil {
		e.t.Fatalf("ping %s from %s through the tunnel: %v\n%s", target, c.inner, err, out)
	}
	if !strings.Contains(string(out), fmt.Sprintf("%d received", count)) {
		e.t.Fatalf("ping lost packets:\n%s", out)
	}
}

// tcpTransfer sends size random bytes over TCP from the client's inner
// address to the gateway's inner address (through the tunnel, both ways
// since TCP acknowledges) and checks that the receiver saw exactly the bytes
// the sender sent.
func (e *env) tcpTransfer(c *client, size int) {
	e.t.Helper()
	e.tcpTransferBetween(c.ns, c.inner.String(), gwInner, size)
}

// TestStrongSwanTraffic: ping and a checked TCP transfer through a tunnel
// from a strongSwan client, for each ESP proposal of the matrix.
func TestStrongSwanTraffic(t *testing.T) {
	for _, tc := range []struct{ name, ike, esp string }{
		{"aes256gcm", "aes256gcm16-prfsha256-x25519", "aes256gcm16"},
		{"aes256cbc-sha256", "aes256-sha256-ecp256", "aes256-sha256"},
		{"aes128cbc-sha1", "aes128-sha1-modp2048", "aes128-sha1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1)
			e.startHike(hikePSKConf)
			c := e.clients[0]
			d := e.startSwan(1, swanConf(c, tc.ike, tc.esp, ""))
			if err := d.Initiate("net"); err != nil {
				t.Fatal(err)
			}
			e.ping(c, gwInner, 5)
			e.tcpTransfer(c, 2<<20)
			sas, err := d.SAs()
			if err != nil || len(sas) != 1 || len(sas[0].Children) != 1 {
				t.Fatalf("%+v %v", sas, err)
			}
			ch := sas[0].Children[0]
			if ch.PacketsIn == "0" || ch.PacketsOut == "0" {
				t.Fatalf("strongSwan counted no ESP: in %s out %s", ch.PacketsIn, ch.PacketsOut)
			}
			// hike's own view: `hike sa show` reads the data plane's counters.
			out, err := e.hikeCtl("sa", "show", sas[0].SPIr, "--json")
			if err != nil {
				t.Fatalf("hike sa show: %v\n%s", err, out)
			}
			var show struct {
				Children []struct {
					Traffic *struct {
						InPackets  uint64 `json:"in_packets"`
						OutPackets uint64 `json:"out_packets"`
						InBytes    uint64 `json:"in_bytes"`
					} `json:"traffic"`
				} `json:"children"`
			}
			if err := json.Unmarshal([]byte(out), &show); err != nil || len(show.Children) != 1 || show.Children[0].Traffic == nil {
				t.Fatalf("hike sa show --json: %v\n%s", err, out)
			}
			if tr := show.Children[0].Traffic; tr.InPackets < 5 || tr.OutPackets < 5 || tr.InBytes < 2<<20 {
				t.Fatalf("hike counted too little traffic: %+v", *tr)
			}
		})
	}
}
