package wireshark_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hike-vpn/hike/internal/wire"
)

// findTshark returns tshark's path. Without it the test cannot run: under
// CI that is a broken machine, elsewhere a missing optional tool.
func findTshark(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("tshark")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tshark not installed (apt-get install tshark)")
		}
		t.Skip("tshark not installed")
	}
	return p
}

// decryptionTable returns one record of Wireshark's "IKEv2 Decryption
// Table" preference (ikev2_decryption_table) for sa: both SPIs, SK_ei,
// SK_er, the encryption algorithm, SK_ai, SK_ar and the integrity algorithm,
// the algorithms named as Wireshark's table lists them. For an AEAD the
// SK_e keys include the salt and there is no integrity key.
func decryptionTable(sa *ikeSA) string {
	var encr string
	switch {
	case sa.encr.ID == wire.ENCR_AES_GCM_16:
		encr = fmt.Sprintf("AES-GCM-%d with 16 octet ICV [RFC5282]", sa.encr.KeyBits)
	case sa.encr.ID == wire.ENCR_AES_CBC:
		encr = fmt.Sprintf("AES-CBC-%d [RFC3602]", sa.encr.KeyBits)
	}
	integ := "NONE [RFC4306]"
	if sa.integ != nil {
		switch sa.integ.ID {
		case wire.AUTH_HMAC_SHA1_96:
			integ = "HMAC_SHA1_96 [RFC2404]"
		case wire.AUTH_HMAC_SHA2_256_128:
			integ = "HMAC_SHA2_256_128 [RFC4868]"
		case wire.AUTH_HMAC_SHA2_384_192:
			integ = "HMAC_SHA2_384_192 [RFC4868]"
		case wire.AUTH_HMAC_SHA2_512_256:
			integ = "HMAC_SHA2_512_256 [RFC4868]"
		}
	}
	// In a UAT record byte fields are bare hex and text fields are quoted.
	q := func(s string) string { return `"` + s + `"` }
	return strings.Join([]string{
		hex64(sa.spii), hex64(sa.spir),
		hex.EncodeToString(sa.keys.Ei), hex.EncodeToString(sa.keys.Er), q(encr),
		hex.EncodeToString(sa.keys.Ai), hex.EncodeToString(sa.keys.Ar), q(integ),
	}, ",")
}

// Fields every frame is dissected for, besides those the frames expect:
// malformed markers and expert items, which must not appear at warning or
// error severity.
var checkFields = []string{"_ws.malformed", "_ws.expert.severity", "_ws.expert.message"}

// Wireshark's expert severities (epan/proto.h, PI_WARN and PI_ERROR).
const (
	severityWarn  = "6291456"
	severityError = "8388608"
)

// wantFields is every field some frame expects. Each frame is compared on
// all of them, so a field a frame does not expect must be absent from it.
func wantFields(frames []frame) []string {
	set := map[string]bool{}
	for _, f := range frames {
		for k := range f.want {
			set[k] = true
		}
	}
	names := make([]string, 0, len(set))
	for k := range set {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// dissected is what tshark showed for one frame: every occurrence of each
// field, in tree order.
type dissected map[string][]string

// dissect runs tshark over the capture with the decryption table and
// returns one dissected map per frame. The keys reach tshark only on its
// command line and are never logged.
func dissect(t *testing.T, tshark, pcap string, names []string, table ...string) []dissected {
	t.Helper()
	all := append(slices.Clone(checkFields), names...)
	args := []string{"-n", "-r", pcap, "-T", "fields",
		"-E", "header=n", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=|"}
	for _, r := range table {
		args = append(args, "-o", "uat:ikev2_decryption_table:"+r)
	}
	for _, n := range all {
		args = append(args, "-e", n)
	}
	cmd := exec.Command(tshark, args...)
	// A personal Wireshark profile (heuristics, port mappings, a stale
	// decryption table) must not change the dissection.
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Dir(pcap), "HOME="+filepath.Dir(pcap))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark failed: %v\n%s", err, redact(stderr.String(), table))
	}
	var res []dissected
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		cols := strings.Split(line, "\t")
		if len(cols) != len(all) {
			t.Fatalf("tshark printed %d columns, want %d: %q", len(cols), len(all), line)
		}
		d := dissected{}
		for i, n := range all {
			if cols[i] != "" {
				d[n] = strings.Split(cols[i], "|")
			}
		}
		res = append(res, d)
	}
	return res
}

func compare(t *testing.T, frames []frame, got []dissected) {
	t.Helper()
	if len(got) != len(frames) {
		t.Fatalf("tshark dissected %d frames, want %d", len(got), len(frames))
	}
	names := wantFields(frames)
	for i, f := range frames {
		d := got[i]
		var problems []string
		if m := d["_ws.malformed"]; len(m) > 0 {
			problems = append(problems, fmt.Sprintf("malformed: %q", m))
		}
		sev, msg := d["_ws.expert.severity"], d["_ws.expert.message"]
		for j, s := range sev {
			if s == severityWarn || s == severityError {
				m := "?"
				if j < len(msg) {
					m = msg[j]
				}
				problems = append(problems, fmt.Sprintf("expert %s: %s", s, m))
			}
		}
		for _, n := range names {
			if !slices.Equal(d[n], f.want[n]) {
				problems = append(problems, fmt.Sprintf("%s = %q, want %q", n, d[n], f.want[n]))
			}
		}
		if len(problems) > 0 {
			t.Errorf("frame %d (%s):\n\t%s", i+1, f.name, strings.Join(problems, "\n\t"))
		}
	}
}

// redact removes the decryption table from tshark's messages: tshark quotes
// a rejected preference, keys and all.
func redact(s string, table []string) string {
	for _, r := range table {
		for _, f := range append(strings.Split(r, ","), r) {
			if len(f) >= 16 {
				s = strings.ReplaceAll(s, f, "[redacted]")
			}
		}
	}
	return s
}
