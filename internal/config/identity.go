package config

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/hike-vpn/hike/internal/wire"
)

// Identity is an IKE identity (RFC 7296 §3.5) as configured. The type is
// inferred the way strongSwan does it, or given by a prefix:
//
//	%any, any                     any identity (Type 0)
//	192.0.2.1, 2001:db8::1        ID_IPV4_ADDR, ID_IPV6_ADDR   (prefix ipv4:, ipv6:)
//	vpn.example.com, @vpn.example ID_FQDN                      (prefix fqdn:)
//	alice@example.com             ID_RFC822_ADDR               (prefix email:)
//	"C=CH, O=Example, CN=gw"      ID_DER_ASN1_DN               (prefix dn:)
//	@#0a1b2c                      ID_KEY_ID, hex               (prefix keyid:)
//
// A remote identity may contain '*' wildcards in FQDN, e-mail and DN values
// ("*.example.com", "*@example.com", "C=CH, O=Example, CN=*").
type Identity struct {
	Type  wire.IDType // 0: any identity
	Value string      // the identity text without type prefix
	// Data is the identification data as sent on the wire (RFC 7296
	// §3.5); nil for "any" and for patterns.
	Data []byte
}

// Any reports whether the identity matches every peer identity.
func (id Identity) Any() bool { return id.Type == 0 }

// IsPattern reports whether the identity contains wildcards.
func (id Identity) IsPattern() bool { return id.Type != 0 && id.Data == nil }

func (id Identity) String() string {
	if id.Type == 0 {
		return "%any"
	}
	return id.Value
}

// Matches reports whether a received identity (type and identification
// data) satisfies this configured identity.
func (id Identity) Matches(t wire.IDType, data []byte) bool {
	switch {
	case id.Type == 0:
		return true
	case t != id.Type:
		return false
	case t == wire.ID_DER_ASN1_DN:
		// Compared by value: peers encode the same DN with different
		// ASN.1 string types, so DER equality would be too strict.
		return matchDN(id.Value, data)
	case id.Data != nil:
		return bytes.Equal(id.Data, data)
	}
	return glob(strings.ToLower(id.Value), strings.ToLower(string(data)))
}

var idPrefixes = []struct {
	prefix string
	t      wire.IDType
}{
	{"ipv4:", wire.ID_IPV4_ADDR}, {"ipv6:", wire.ID_IPV6_ADDR}, {"fqdn:", wire.ID_FQDN},
	{"email:", wire.ID_RFC822_ADDR}, {"dn:", wire.ID_DER_ASN1_DN}, {"keyid:", wire.ID_KEY_ID},
}

// ParseIdentity parses a configured identity; patterns are accepted only
// when patternOK (remote identities).
func ParseIdentity(s string, patternOK bool) (Identity, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "%any" || s == "any" {
		return Identity{}, nil
	}
	var t wire.IDType
	v := s
	for _, p := range idPrefixes {
		if rest, ok := strings.CutPrefix(s, p.prefix); ok {
			t, v = p.t, rest
			break
		}
	}
	if t == 0 {
		a, err := netip.ParseAddr(s)
		switch {
		case err == nil && a.Is4():
			t = wire.ID_IPV4_ADDR
		case err == nil:
			t = wire.ID_IPV6_ADDR
		case strings.HasPrefix(s, "@#"):
			t, v = wire.ID_KEY_ID, s[2:]
		case strings.HasPrefix(s, "@"):
			t, v = wire.ID_FQDN, s[1:]
		case strings.Contains(s, "="):
			t = wire.ID_DER_ASN1_DN
		case strings.Contains(s, "@"):
			t = wire.ID_RFC822_ADDR
		default:
			t = wire.ID_FQDN
		}
	}
	id := Identity{Type: t, Value: v}
	if v == "" {
		return id, fmt.Errorf("identity %q is empty after its type prefix", s)
	}
	if strings.Contains(v, "*") {
		switch {
		case !patternOK:
			return id, fmt.Errorf("identity %q: wildcards are only allowed in remote identities", s)
		case t == wire.ID_IPV4_ADDR || t == wire.ID_IPV6_ADDR || t == wire.ID_KEY_ID:
			return id, fmt.Errorf("identity %q: wildcards apply to FQDN, e-mail and DN identities only", s)
		case t == wire.ID_DER_ASN1_DN:
			if _, err := parseDN(v); err != nil {
				return id, fmt.Errorf("identity %q: %v", s, err)
			}
		}
		return id, nil
	}
	switch t {
	case wire.ID_IPV4_ADDR, wire.ID_IPV6_ADDR:
		a, err := netip.ParseAddr(v)
		if err != nil || a.Is4() != (t == wire.ID_IPV4_ADDR) || a.Zone() != "" {
			return id, fmt.Errorf("identity %q is not an IP%s address", s, map[bool]string{true: "v4", false: "v6"}[t == wire.ID_IPV4_ADDR])
		}
		id.Data = a.AsSlice()
	case wire.ID_KEY_ID:
		b, err := hex.DecodeString(v)
		if err != nil || len(b) == 0 {
			return id, fmt.Errorf("identity %q: key IDs are hex", s)
		}
		id.Data = b
	case wire.ID_DER_ASN1_DN:
		rdns, err := parseDN(v)
		if err != nil {
			return id, fmt.Errorf("identity %q: %v", s, err)
		}
		der, err := asn1.Marshal(rdns)
		if err != nil {
			return id, fmt.Errorf("identity %q: %v", s, err)
		}
		id.Data = der
	default:
		id.Data = []byte(v)
	}
	return id, nil
}

// dnAttrs maps the attribute names operators write in DNs to their OIDs
// (RFC 4519, and PKCS #9 for emailAddress).
var dnAttrs = map[string]asn1.ObjectIdentifier{
	"C": {2, 5, 4, 6}, "ST": {2, 5, 4, 8}, "L": {2, 5, 4, 7}, "O": {2, 5, 4, 10},
	"OU": {2, 5, 4, 11}, "CN": {2, 5, 4, 3}, "SN": {2, 5, 4, 4}, "GN": {2, 5, 4, 42},
	"SERIALNUMBER": {2, 5, 4, 5}, "STREET": {2, 5, 4, 9}, "T": {2, 5, 4, 12},
	"DC": {0, 9, 2342, 19200300, 100, 1, 25}, "UID": {0, 9, 2342, 19200300, 100, 1, 1},
	"E": {1, 2, 840, 113549, 1, 9, 1}, "EMAILADDRESS": {1, 2, 840, 113549, 1, 9, 1},
}

// parseDN parses "C=CH, O=Example, CN=gw" into an RDN sequence in the order
// written, which is the order of the certificate's subject as strongSwan
// and OpenSSL's one-line form print it. A backslash escapes a comma.
func parseDN(s string) (pkix.RDNSequence, error) {
	var rdns pkix.RDNSequence
	for _, part := range splitUnescaped(s, ',') {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("DN component %q is not TYPE=value", part)
		}
		oid, ok := dnAttrs[strings.ToUpper(strings.TrimSpace(k))]
		if !ok {
			return nil, fmt.Errorf("unknown DN attribute %q (expected one of: C, ST, L, O, OU, CN, SN, GN, serialNumber, street, T, DC, UID, E)", strings.TrimSpace(k))
		}
		v = unescape(strings.TrimSpace(v))
		if v == "" {
			return nil, fmt.Errorf("DN component %q has an empty value", part)
		}
		rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{Type: oid, Value: v}})
	}
	if len(rdns) == 0 {
		return nil, errors.New("empty DN")
	}
	return rdns, nil
}

func splitUnescaped(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// matchDN compares a received DER DN with a configured DN pattern RDN by
// RDN; a value of "*" matches any value and other values may contain '*'.
func matchDN(pattern string, der []byte) bool {
	want, err := parseDN(pattern)
	if err != nil {
		return false
	}
	var got pkix.RDNSequence
	if rest, err := asn1.Unmarshal(der, &got); err != nil || len(rest) != 0 || len(got) != len(want) {
		return false
	}
	for i := range want {
		if len(got[i]) != 1 || !got[i][0].Type.Equal(want[i][0].Type) {
			return false
		}
		gv, ok := got[i][0].Value.(string)
		if !ok || !glob(want[i][0].Value.(string), gv) {
			return false
		}
	}
	return true
}

// glob matches s against a pattern in which '*' stands for any run of
// characters. Iterative with one backtrack point, so linear in practice
// and never exponential.
func glob(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p, mark = star+1, mark+1
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// dnString prints a DER DN in the order it is encoded, with the attribute
// names parseDN accepts, so that printing and parsing round-trip.
func dnString(der []byte) string {
	var rdns pkix.RDNSequence
	if _, err := asn1.Unmarshal(der, &rdns); err != nil {
		return ""
	}
	var b strings.Builder
	for _, rdn := range rdns {
		for _, atv := range rdn {
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(attrName(atv.Type))
			b.WriteByte('=')
			v := fmt.Sprint(atv.Value)
			b.WriteString(strings.ReplaceAll(v, ",", `\,`))
		}
	}
	return b.String()
}

func attrName(oid asn1.ObjectIdentifier) string {
	best := ""
	for name, o := range dnAttrs {
		// Prefer the short spelling when two names share an OID.
		if o.Equal(oid) && (best == "" || len(name) < len(best)) {
			best = name
		}
	}
	if best == "" {
		return oid.String()
	}
	return best
}
