package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/wire"
)

var fuzzName = filepath.Join(examplesDir, "fuzz.yaml")

// FuzzParse checks that no input makes Parse panic or return a malformed
// result: either a config or an Errors whose entries all name the file.
func FuzzParse(f *testing.F) {
	examples, _ := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	for _, e := range examples {
		if data, err := os.ReadFile(e); err == nil {
			f.Add(data)
		}
	}
	for _, s := range []string{
		"", "---", "[]", "x: [", "listen: {port: 99999}", "connections: [{}]",
		"connections:\n  - name: a\n    local: {auth: psk}\n    remote: {}\n    psk: s\n    children: [{name: c, local_ts: \"10.0.0.0/8[tcp/1-2]\"}]\nsecrets: {s: {psk: \"0x00112233445566778899aabbccddeeff\"}}\n",
		"a: &a [*a]", "a: &x {b: *x}\nlisten: *x", "<<: {x: 1}", "pools: {p: [\"::/0\", 0.0.0.0/0]}",
		"cluster: {node_id: a, peers: [{id: a, address: 'h:1', vips: [1.2.3.4/33]}]}",
		"connections: [{name: a, ike: {proposals: [aes256gcm16-prfsha256-x25519-esn]}}]",
		"log: !!binary aGVsbG8=", "? [a]\n: b", "listen: {port: 0x1F4}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The engine does not report slow inputs; a panic does, with the input.
		wd := time.AfterFunc(5*time.Second, func() { panic(fmt.Sprintf("Parse took over 5s on %q", data)) })
		// Named inside examples/ so that references to examples/pki
		// resolve and the certificate and key readers run too.
		cfg, err := Parse(fuzzName, data)
		wd.Stop()
		if err == nil {
			if cfg == nil {
				t.Fatal("nil config without error")
			}
			for _, c := range cfg.Connections {
				if c.Name == "" || len(c.Children) == 0 || len(c.IKE.Proposals) == 0 {
					t.Fatalf("incomplete connection accepted: %+v", c)
				}
			}
			return
		}
		var es Errors
		if !errors.As(err, &es) || len(es) == 0 {
			t.Fatalf("error is not Errors: %v", err)
		}
		for _, e := range es {
			if e.File != fuzzName || e.Msg == "" {
				t.Fatalf("malformed error %#v", e)
			}
		}
	})
}

// FuzzParseProposal: every accepted proposal has a cipher and round-trips
// through its canonical text.
func FuzzParseProposal(f *testing.F) {
	for _, s := range []string{"aes256gcm16-prfsha256-x25519", "aes128-sha1-modp2048", "aes256-sha256-esn", "chacha20poly1305", "-", "aes"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, ike bool) {
		proto := wire.ProtoESP
		if ike {
			proto = wire.ProtoIKE
		}
		p, err := ParseProposal(proto, s)
		if err != nil {
			return
		}
		if len(p.Of(wire.TransformENCR)) == 0 {
			t.Fatalf("%q: no cipher", s)
		}
		q, err := ParseProposal(proto, p.Text)
		if err != nil || q.Text != p.Text {
			t.Fatalf("%q: canonical %q does not round-trip (%v)", s, p.Text, err)
		}
	})
}

// FuzzIdentityAndSelectors: parsers of free text never panic.
func FuzzIdentityAndSelectors(f *testing.F) {
	for _, s := range []string{"C=CH, CN=*", "*@example.com", "10.0.0.0/8[tcp/1-2]", "dynamic[udp]", "@#00", "a\\,b=c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if id, err := ParseIdentity(s, true); err == nil {
			id.Matches(id.Type, id.Data)
			id.Matches(wire.ID_DER_ASN1_DN, []byte(s))
		}
		if ts, err := ParseTrafficSelector(s); err == nil {
			_ = ts.String()
		}
		parsePoolRange(s)
		if p, err := parseVIP(s); err == nil && (!p.IsValid() || p.Addr().Is4In6()) {
			t.Fatalf("parseVIP(%q) = %v, which is no usable VIP", s, p)
		}
		glob(s, s)
	})
}
