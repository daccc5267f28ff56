package interop

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRFC6311RestartResync is the cluster role against a real RFC 6311 peer:
// a strongSwan client establishes to hike and DPD runs both ways; hike is
// killed (SIGKILL) and restarted from its state file, whose record is several
// exchanges old; hike resynchronises the message IDs with strongSwan, and the
// same IKE SA (same SPIs, no new IKE_SA_INIT) carries DPD and traffic again.
func TestRFC6311RestartResync(t *testing.T) {
	e := newEnv(t, 1)
	e.dpd = "1s"
	key := make([]byte, 32)
	rand.Read(key)
	must(t, os.WriteFile(filepath.Join(e.dir, "state.key"), []byte(hex.EncodeToString(key)), 0o600))
	conf := hikePSKConf + "state:\n  path: $DIR/state\n  key_file: $DIR/state.key\n"
	e.startHike(conf)
	c := e.clients[0]
	// hike probes after 1 s of silence, charon after 3 s: while hike runs,
	// its probes keep charon quiet; while hike is dead, charon starts
	// probing, and its probe must be answered after the resync.
	//
	// The IKE SA uses AES-CBC: strongSwan (5.9.8 and its current source)
	// derives AEAD IVs from Message IDs and refuses to encrypt a Message ID 0
	// response once it has sent both requests and responses with higher IDs
	// ("encrypting encrypted payload failed, no IV or padding"), so it cannot
	// answer a sync under AES-GCM after such a history (docs/rfc6311.md).
	d := e.startSwan(1, swanConf(c, "aes256-sha256-ecp256", "aes256gcm16", "dpd_delay = 3s"))
	if err := d.Initiate("net"); err != nil {
		t.Fatal(err)
	}
	sas, err := d.SAs()
	if err != nil || len(sas) != 1 {
		t.Fatalf("%+v %v", sas, err)
	}
	spiI, spiR := sas[0].SPIi, sas[0].SPIr
	e.ping(c, gwInner, 2)
	// The record is written at establishment; let both sides run several
	// exchanges past it.
	waitFor(t, 10*time.Second, "state file", func() bool {
		_, err := os.Stat(filepath.Join(e.dir, "state"))
		return err == nil
	})
	time.Sleep(4 * time.Second)
	if n := strings.Count(d.Log(), "parsed INFORMATIONAL"); n < 3 {
		t.Fatalf("only %d INFORMATIONAL exchanges before the kill", n)
	}
	initsBefore := strings.Count(d.Log(), "IKE_SA_INIT")

	must(t, e.hike.Signal(syscall.SIGKILL))
	e.hike.Wait()
	firstLog := e.hike.Out.String()
	waitFor(t, 10*time.Second, "charon to probe the dead gateway", func() bool {
		return strings.Contains(d.Log(), "sending DPD request")
	})
	e.startHike(conf)
	waitFor(t, 15*time.Second, "hike to resync", func() bool {
		return strings.Contains(e.hike.Out.String(), `msg="RFC 6311 sync complete"`)
	})
	if !strings.Contains(d.Log(), "parsed INFORMATIONAL request 0 [ N(MSG_ID_SYN) ]") {
		t.Fatalf("strongSwan never saw the sync notify")
	}
	// DPD both ways on the same SA. hike's probes reach charon under the
	// new Message IDs; then hike stalls (SIGSTOP) long enough for charon to
	// probe it, and answers once it runs again.
	syncAt := strings.Index(d.Log(), "requested MID sync")
	waitFor(t, 10*time.Second, "hike's DPD after the resync", func() bool {
		return strings.Count(d.Log()[syncAt:], "parsed INFORMATIONAL request") >= 3
	})
	must(t, e.hike.Signal(syscall.SIGSTOP))
	waitFor(t, 10*time.Second, "charon to probe the stalled gateway", func() bool {
		return strings.Contains(d.Log()[syncAt:], "sending DPD request")
	})
	must(t, e.hike.Signal(syscall.SIGCONT))
	waitFor(t, 10*time.Second, "charon's DPD answered", func() bool {
		return strings.Contains(d.Log()[syncAt:], "parsed INFORMATIONAL response")
	})
	sas, err = d.SAs()
	if err != nil || len(sas) != 1 || sas[0].SPIi != spiI || sas[0].SPIr != spiR || sas[0].State != "ESTABLISHED" {
		t.Fatalf("strongSwan's IKE SA after the restart: %+v %v (want SPIs %s/%s)", sas, err, spiI, spiR)
	}
	if n := strings.Count(d.Log(), "IKE_SA_INIT"); n != initsBefore {
		t.Fatalf("strongSwan ran IKE_SA_INIT again (%d -> %d)", initsBefore, n)
	}
	e.ping(c, gwInner, 3)
	e.tcpTransfer(c, 1<<20)
	t.Logf("hike before the kill:\n%s", tailLines(firstLog, 6))
	t.Logf("hike after the restart:\n%s", tailLines(grepLines(e.hike.Out.String(), "restored", "RFC 6311"), 10))
	t.Logf("strongSwan around the sync:\n%s", tailLines(grepLines(d.Log(), "MSG_ID_SYN", "message ID"), 10))
}

func grepLines(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
