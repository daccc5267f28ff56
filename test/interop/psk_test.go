package interop

import (
	"strings"
	"testing"
	"time"
)

// TestStrongSwanInitiatorPSK: a strongSwan client establishes to hike with
// each of the proposal sets the interop matrix names, exchanges DPD both
// ways and deletes the SA. A side sends DPD only after a silence, so each
// direction gets its own phase: first hike probes (charon's DPD off), then
// charon probes (hike's much slower).
func TestStrongSwanInitiatorPSK(t *testing.T) {
	for _, tc := range []struct{ name, ike, esp string }{
		{"x25519-aes256gcm", "aes256gcm16-prfsha256-x25519", "aes256gcm16"},
		{"ecp256-aes256cbc-sha256", "aes256-sha256-ecp256", "aes256-sha256"},
		{"modp2048-aes128cbc-sha1", "aes128-sha1-modp2048", "aes128-sha1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1)
			e.dpd = "2s"
			e.startHike(hikePSKConf)
			c := e.clients[0]
			d := e.startSwan(1, swanConf(c, tc.ike, tc.esp, ""))
			if err := d.Initiate("net"); err != nil {
				t.Fatal(err)
			}
			sas, err := d.SAs()
			if err != nil || len(sas) != 1 || sas[0].State != "ESTABLISHED" || len(sas[0].Children) != 1 {
				t.Fatalf("strongSwan SAs: %+v %v", sas, err)
			}
			spiI, spiR := sas[0].SPIi, sas[0].SPIr
			waitFor(t, 6*time.Second, "a DPD request from hike answered by charon", func() bool {
				return strings.Contains(d.Log(), "parsed INFORMATIONAL request") &&
					strings.Contains(d.Log(), "generating INFORMATIONAL response")
			})
			sas, _ = d.SAs()
			if len(sas) != 1 || sas[0].SPIi != spiI || sas[0].SPIr != spiR {
				t.Fatalf("IKE SA changed or vanished: %+v", sas)
			}
			if _, err := d.Swanctl("--terminate", "--ike", "gw"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "hike to remove the SA", func() bool {
				return strings.Contains(e.hike.Out.String(), `msg="IKE SA removed"`)
			})
		})
	}
}

// TestStrongSwanDPD: charon probes a silent hike, which answers.
func TestStrongSwanDPD(t *testing.T) {
	e := newEnv(t, 1)
	e.startHike(hikePSKConf)
	d := e.startSwan(1, swanConf(e.clients[0], "aes256gcm16-prfsha256-x25519", "aes256gcm16", "dpd_delay = 1s"))
	if err := d.Initiate("net"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 6*time.Second, "charon's DPD answered by hike", func() bool {
		return strings.Count(d.Log(), "parsed INFORMATIONAL response") >= 2
	})
	if strings.Contains(d.Log(), "giving up") {
		t.Fatal("charon gave up on hike")
	}
}
