package config

import (
	"crypto/x509"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hike-vpn/hike/internal/wire"
)

// Transform type and ID values below are typed from the IANA "IKEv2
// Parameters" registry (RFC 7296 §3.3.2; AES-GCM RFC 5282, ChaCha20-Poly1305
// RFC 7634, Curve25519 RFC 8031), not taken from the code under test.
func TestParseProposal(t *testing.T) {
	type tr = wire.Transform
	tests := []struct {
		proto wire.ProtocolID
		in    string
		text  string
		want  []tr
	}{
		{wire.ProtoIKE, "aes256gcm16-prfsha256-x25519", "aes256gcm16-prfsha256-x25519",
			[]tr{{Type: 1, ID: 20, KeyLen: 256}, {Type: 2, ID: 5}, {Type: 4, ID: 31}}},
		{wire.ProtoIKE, "aes256-sha256-ecp256", "aes256-sha256-ecp256-prfsha256",
			[]tr{{Type: 1, ID: 12, KeyLen: 256}, {Type: 3, ID: 12}, {Type: 4, ID: 19}, {Type: 2, ID: 5}}},
		{wire.ProtoIKE, "aes128-sha1-modp2048", "aes128-sha1-modp2048-prfsha1",
			[]tr{{Type: 1, ID: 12, KeyLen: 128}, {Type: 3, ID: 2}, {Type: 4, ID: 14}, {Type: 2, ID: 2}}},
		{wire.ProtoIKE, "AES192-SHA384-SHA512-prfsha512-ecp384-ecp521-modp3072-modp4096", "aes192-sha384-sha512-prfsha512-ecp384-ecp521-modp3072-modp4096",
			[]tr{{Type: 1, ID: 12, KeyLen: 192}, {Type: 3, ID: 13}, {Type: 3, ID: 14}, {Type: 2, ID: 7}, {Type: 4, ID: 20}, {Type: 4, ID: 21}, {Type: 4, ID: 15}, {Type: 4, ID: 16}}},
		{wire.ProtoIKE, "chacha20poly1305-prfsha384-curve25519", "chacha20poly1305-prfsha384-x25519",
			[]tr{{Type: 1, ID: 28}, {Type: 2, ID: 6}, {Type: 4, ID: 31}}},
		{wire.ProtoIKE, "aes128gcm-aes256gcm16-prfsha256-ecp256", "aes128gcm16-aes256gcm16-prfsha256-ecp256",
			[]tr{{Type: 1, ID: 20, KeyLen: 128}, {Type: 1, ID: 20, KeyLen: 256}, {Type: 2, ID: 5}, {Type: 4, ID: 19}}},
		{wire.ProtoESP, "aes256gcm16", "aes256gcm16-noesn",
			[]tr{{Type: 1, ID: 20, KeyLen: 256}, {Type: 5, ID: 0}}},
		{wire.ProtoESP, "aes256-sha256", "aes256-sha256-noesn",
			[]tr{{Type: 1, ID: 12, KeyLen: 256}, {Type: 3, ID: 12}, {Type: 5, ID: 0}}},
		{wire.ProtoESP, "aes128-sha1-esn", "aes128-sha1-esn",
			[]tr{{Type: 1, ID: 12, KeyLen: 128}, {Type: 3, ID: 2}, {Type: 5, ID: 1}}},
		{wire.ProtoESP, "chacha20poly1305-esn-noesn", "chacha20poly1305-esn-noesn",
			[]tr{{Type: 1, ID: 28}, {Type: 5, ID: 1}, {Type: 5, ID: 0}}},
		{wire.ProtoESP, "aes256gcm16-x25519-esn", "aes256gcm16-x25519-esn",
			[]tr{{Type: 1, ID: 20, KeyLen: 256}, {Type: 4, ID: 31}, {Type: 5, ID: 1}}},
		{wire.ProtoESP, "aes-sha", "aes128-sha1-noesn",
			[]tr{{Type: 1, ID: 12, KeyLen: 128}, {Type: 3, ID: 2}, {Type: 5, ID: 0}}},
	}
	for _, tc := range tests {
		p, err := ParseProposal(tc.proto, tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if fmt.Sprint(p.Transforms) != fmt.Sprint(tc.want) {
			t.Errorf("%s: transforms %v, want %v", tc.in, p.Transforms, tc.want)
		}
		if p.String() != tc.text {
			t.Errorf("%s: text %q, want %q", tc.in, p.String(), tc.text)
		}
		if p.Protocol != tc.proto || p.Wire(3).Num != 3 || p.Wire(3).Protocol != tc.proto {
			t.Errorf("%s: protocol/wire mismatch", tc.in)
		}
		// The canonical text parses back to the same transforms.
		q, err := ParseProposal(tc.proto, p.Text)
		if err != nil || fmt.Sprint(q.Transforms) != fmt.Sprint(p.Transforms) {
			t.Errorf("%s: canonical text %q does not round-trip: %v %v", tc.in, p.Text, q.Transforms, err)
		}
	}
}

func TestParseProposalErrors(t *testing.T) {
	tests := []struct {
		proto wire.ProtocolID
		in    string
		want  string
	}{
		{wire.ProtoIKE, "", "empty proposal"},
		{wire.ProtoIKE, "aes257-sha256-ecp256", `unknown algorithm "aes257" (expected one of: aes128, aes192, aes256, aes128gcm16, aes256gcm16, chacha20poly1305, prfsha1`},
		{wire.ProtoIKE, "aes256--sha256-ecp256", `unknown algorithm ""`},
		{wire.ProtoIKE, "sha256-ecp256", "names no cipher"},
		{wire.ProtoIKE, "aes256gcm16-aes256-sha256-prfsha256-ecp256", "mixes AEAD and non-AEAD"},
		{wire.ProtoIKE, "aes256gcm16-x25519", "an AEAD cipher needs a PRF in IKE"},
		{wire.ProtoIKE, "aes256gcm16-sha256-prfsha256-x25519", "carries its own integrity check"},
		{wire.ProtoIKE, "aes256-prfsha256-x25519", "needs an integrity algorithm"},
		{wire.ProtoIKE, "aes256-sha256", "names no key exchange group"},
		{wire.ProtoIKE, "aes256-sha256-ecp256-esn", "esn/noesn apply to ESP"},
		{wire.ProtoESP, "aes256-sha256-prfsha256", "a PRF applies to IKE"},
		{wire.ProtoESP, "aes256", "needs an integrity algorithm"},
		{wire.ProtoESP, "aes192gcm16", `unknown algorithm "aes192gcm16"`},
		{wire.ProtoAH, "sha256", "unsupported protocol"},
	}
	for _, tc := range tests {
		_, err := ParseProposal(tc.proto, tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestDefaultProposalsParse(t *testing.T) {
	for _, s := range DefaultIKEProposals {
		if _, err := ParseProposal(wire.ProtoIKE, s); err != nil {
			t.Error(err)
		}
	}
	for _, s := range DefaultESPProposals {
		if _, err := ParseProposal(wire.ProtoESP, s); err != nil {
			t.Error(err)
		}
	}
}

func TestParseIdentity(t *testing.T) {
	tests := []struct {
		in      string
		typ     wire.IDType
		value   string
		data    string // hex, "" for none
		pattern bool
	}{
		{"%any", 0, "", "", false},
		{"192.0.2.1", wire.ID_IPV4_ADDR, "192.0.2.1", "c0000201", false},
		{"2001:db8::1", wire.ID_IPV6_ADDR, "2001:db8::1", "20010db8000000000000000000000001", false},
		{"vpn.example.com", wire.ID_FQDN, "vpn.example.com", "76706e2e6578616d706c652e636f6d", false},
		{"@vpn", wire.ID_FQDN, "vpn", "76706e", false},
		{"fqdn:a@b", wire.ID_FQDN, "a@b", "614062", false},
		{"alice@example.com", wire.ID_RFC822_ADDR, "alice@example.com", "616c696365406578616d706c652e636f6d", false},
		{"@#0a0b", wire.ID_KEY_ID, "0a0b", "0a0b", false},
		{"*@example.com", wire.ID_RFC822_ADDR, "*@example.com", "", true},
		// DER of SEQUENCE { SET { SEQUENCE { OID 2.5.4.6, PrintableString "CH" } } }.
		{"C=CH", wire.ID_DER_ASN1_DN, "C=CH", "300d310b3009060355040613024348", false},
	}
	for _, tc := range tests {
		id, err := ParseIdentity(tc.in, true)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if id.Type != tc.typ || id.Value != tc.value || fmt.Sprintf("%x", id.Data) != tc.data || id.IsPattern() != tc.pattern {
			t.Errorf("%s: got %+v (data %x)", tc.in, id, id.Data)
		}
	}
	for _, bad := range []string{"ipv4:2001:db8::1", "ipv4:192.0.2.*", "@#zz", "C=CH, XX=y", "dn:CN=", "dn:CN=*, X=1", "fqdn:"} {
		if _, err := ParseIdentity(bad, true); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := ParseIdentity("*.example.com", false); err == nil {
		t.Error("local wildcard accepted")
	}
}

func TestIdentityMatches(t *testing.T) {
	pki := testPKI(t)
	certs, err := readCerts(filepath.Join(pki, "client.pem"))
	if err != nil {
		t.Fatal(err)
	}
	subject := certs[0].RawSubject
	tests := []struct {
		pattern string
		t       wire.IDType
		data    []byte
		want    bool
	}{
		{"%any", wire.ID_FQDN, []byte("x"), true},
		{"*.example.com", wire.ID_FQDN, []byte("vpn.example.com"), true},
		{"*.example.com", wire.ID_FQDN, []byte("example.com"), false},
		{"*.example.com", wire.ID_RFC822_ADDR, []byte("a.example.com"), false},
		{"*@example.com", wire.ID_RFC822_ADDR, []byte("Alice@Example.com"), true},
		{"192.0.2.1", wire.ID_IPV4_ADDR, []byte{192, 0, 2, 1}, true},
		{"192.0.2.1", wire.ID_IPV4_ADDR, []byte{192, 0, 2, 2}, false},
		{"C=CH, O=hike EXAMPLE ONLY - DO NOT USE, CN=*", wire.ID_DER_ASN1_DN, subject, true},
		{"C=CH, O=hike EXAMPLE ONLY - DO NOT USE, CN=alice@example.com", wire.ID_DER_ASN1_DN, subject, true},
		{"C=CH, O=hike EXAMPLE ONLY - DO NOT USE, CN=bob", wire.ID_DER_ASN1_DN, subject, false},
		{"C=CH, CN=*", wire.ID_DER_ASN1_DN, subject, false},
		{"C=CH, O=*, CN=*", wire.ID_DER_ASN1_DN, []byte{0x30, 0x80}, false},
	}
	for _, tc := range tests {
		id, err := ParseIdentity(tc.pattern, true)
		if err != nil {
			t.Fatal(err)
		}
		if got := id.Matches(tc.t, tc.data); got != tc.want {
			t.Errorf("%q matches %d %q = %v", tc.pattern, tc.t, tc.data, got)
		}
	}
}

func TestLocalIDFromCertificate(t *testing.T) {
	cfg, err := load(t, `
connections:
  - name: a
    local: {auth: pubkey, cert: pki/gw.pem, key: pki/gw.key}
    remote: {ca: pki/ca.pem}
    children: [{name: c}]
`)
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Connections[0].Local
	if l.ID.Type != wire.ID_DER_ASN1_DN || string(l.ID.Data) != string(l.Cert.RawSubject) {
		t.Fatalf("local id = %+v", l.ID)
	}
	if l.ID.Value != "C=CH, O=hike EXAMPLE ONLY - DO NOT USE, CN=vpn.example.com" {
		t.Errorf("local id text = %q", l.ID.Value)
	}
	// The printed DN parses back and matches the certificate.
	id, err := ParseIdentity(l.ID.Value, false)
	if err != nil || !id.Matches(wire.ID_DER_ASN1_DN, l.Cert.RawSubject) {
		t.Errorf("printed DN does not round-trip: %v", err)
	}
	var _ *x509.Certificate = l.Cert
}

func TestGlob(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		{"", "", true}, {"*", "", true}, {"*", "abc", true}, {"a*c", "abbbc", true},
		{"a*c", "abcd", false}, {"*b*", "abc", true}, {"a**", "a", true}, {"?", "a", false},
		{"*a*a*a*a*b", strings.Repeat("a", 50), false},
	}
	for _, tc := range tests {
		if got := glob(tc.p, tc.s); got != tc.want {
			t.Errorf("glob(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
}

func TestParseTrafficSelector(t *testing.T) {
	tests := []struct{ in, want string }{
		{"10.1.0.0/16", "10.1.0.0/16"},
		{"dynamic", "dynamic"},
		{"dynamic[udp/500]", "dynamic[17/500]"},
		{"10.1.0.5", "10.1.0.5/32"},
		{"10.1.0.5-10.1.0.9[tcp/80-90]", "10.1.0.5-10.1.0.9[6/80-90]"},
		{"::/0[icmpv6]", "::/0[58]"},
		{"0.0.0.0/0[47]", "0.0.0.0/0[47]"},
	}
	for _, tc := range tests {
		ts, err := ParseTrafficSelector(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if ts.String() != tc.want {
			t.Errorf("%s: %s, want %s", tc.in, ts, tc.want)
		}
	}
	ts, _ := ParseTrafficSelector("10.1.0.0/16[tcp/443]")
	if ts.From.String() != "10.1.0.0" || ts.To.String() != "10.1.255.255" || ts.Proto != 6 || ts.PortFrom != 443 || ts.PortTo != 443 || ts.Type() != wire.TS_IPV4_ADDR_RANGE {
		t.Errorf("fields = %+v", ts)
	}
	for _, bad := range []string{"10.1.0.1/16", "10.1.0.0/16[tcp", "10.1.0.0/16[foo]", "10.0.0.0/8[any/80]", "10.0.0.9-10.0.0.1", "10.0.0.1-::1", "x", "10.0.0.0/8[tcp/90-80]"} {
		if _, err := ParseTrafficSelector(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseUnits(t *testing.T) {
	for in, want := range map[string]uint64{"0": 0, "1048576": 1 << 20, "1KiB": 1024, "500MB": 500e6, "1GiB": 1 << 30, "2 TB": 2e12} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("size %q = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "1.5GB", "-1", "1PB", "99999999999TiB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("size %q accepted", bad)
		}
	}
	for in, want := range map[string]uint64{"1000": 1000, "1k": 1000, "2M": 2e6, "1G": 1e9, "2^30": 1 << 30, "1_000": 1000} {
		if got, err := parseCount(in); err != nil || got != want {
			t.Errorf("count %q = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"2^64", "x", "1.5M", "-3"} {
		if _, err := parseCount(bad); err == nil {
			t.Errorf("count %q accepted", bad)
		}
	}
	for in, want := range map[string]string{"30s": "30s", "1h30m": "1h30m0s", "2d": "48h0m0s", "250ms": "250ms"} {
		if got, err := parseDuration(in); err != nil || got.String() != want {
			t.Errorf("duration %q = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"30", "1.5", "abc", "-1s", "", "d"} {
		if _, err := parseDuration(bad); err == nil {
			t.Errorf("duration %q accepted", bad)
		}
	}
}

func TestPoolRanges(t *testing.T) {
	for in, want := range map[string]string{
		"10.3.0.0/24":        "10.3.0.1-10.3.0.254",
		"10.3.0.0/31":        "10.3.0.0/31",
		"10.3.0.5":           "10.3.0.5",
		"10.3.0.5-10.3.0.9":  "10.3.0.5-10.3.0.9",
		"fd00::/112":         "fd00::1-fd00::ffff",
		"fd00::1-fd00::ffff": "fd00::1-fd00::ffff",
	} {
		r, err := parsePoolRange(in)
		if err != nil || r.String() != want {
			t.Errorf("pool %q = %s, %v; want %s", in, r, err, want)
		}
	}
}
