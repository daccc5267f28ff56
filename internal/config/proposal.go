package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hike-vpn/hike/internal/wire"
)

// Proposal is one IKE or ESP proposal, parsed from strongSwan's syntax
// ("aes256gcm16-prfsha256-x25519", "aes256-sha256-esn") into the IKEv2
// transforms it offers. Within one transform type the order is the
// preference order the operator wrote.
type Proposal struct {
	Protocol   wire.ProtocolID // wire.ProtoIKE or wire.ProtoESP
	Text       string          // the keywords in canonical spelling, joined by '-'
	Transforms []wire.Transform
}

func (p Proposal) String() string { return p.Text }

// AEAD reports whether the proposal's ciphers are combined-mode ciphers,
// which carry their own integrity check (RFC 5282).
func (p Proposal) AEAD() bool {
	for _, t := range p.Transforms {
		if t.Type == wire.TransformENCR {
			return isAEAD(t.ID)
		}
	}
	return false
}

// Of returns the transforms of one type in preference order.
func (p Proposal) Of(typ wire.TransformType) []wire.Transform {
	var out []wire.Transform
	for _, t := range p.Transforms {
		if t.Type == typ {
			out = append(out, t)
		}
	}
	return out
}

// Wire returns the proposal as an SA payload substructure with the given
// proposal number (RFC 7296 §3.3.1); the SPI is left for the caller.
func (p Proposal) Wire(num uint8) wire.Proposal {
	return wire.Proposal{Num: num, Protocol: p.Protocol, Transforms: slices.Clone(p.Transforms)}
}

func isAEAD(id uint16) bool {
	return id == wire.ENCR_AES_GCM_16 || id == wire.ENCR_CHACHA20_POLY1305
}

type keyword struct {
	name string // canonical spelling, listed in errors and docs
	t    wire.Transform
}

// keywords lists every algorithm hike implements. Aliases map onto a
// canonical name so that errors and String() show one spelling.
var keywords = []keyword{
	{"aes128", wire.Transform{Type: wire.TransformENCR, ID: wire.ENCR_AES_CBC, KeyLen: 128}},
	{"aes192", wire.Transform{Type: wire.TransformENCR, ID: wire.ENCR_AES_CBC, KeyLen: 192}},
	{"aes256", wire.Transform{Type: wire.TransformENCR, ID: wire.ENCR_AES_CBC, KeyLen: 256}},
	{"aes128gcm16", wire.Transform{Type: wire.TransformENCR, ID: wire.ENCR_AES_GCM_16, KeyLen: 128}},
	{"aes256gcm16", wire.Transform{Type: wire.TransformENCR, ID: wire.ENCR_AES_GCM_16, KeyLen: 256}},
	{"chacha20poly1305", wire.Transform{Type: wire.TransformENCR, ID: wire.ENCR_CHACHA20_POLY1305}},
	{"prfsha1", wire.Transform{Type: wire.TransformPRF, ID: wire.PRF_HMAC_SHA1}},
	{"prfsha256", wire.Transform{Type: wire.TransformPRF, ID: wire.PRF_HMAC_SHA2_256}},
	{"prfsha384", wire.Transform{Type: wire.TransformPRF, ID: wire.PRF_HMAC_SHA2_384}},
	{"prfsha512", wire.Transform{Type: wire.TransformPRF, ID: wire.PRF_HMAC_SHA2_512}},
	{"sha1", wire.Transform{Type: wire.TransformINTEG, ID: wire.AUTH_HMAC_SHA1_96}},
	{"sha256", wire.Transform{Type: wire.TransformINTEG, ID: wire.AUTH_HMAC_SHA2_256_128}},
	{"sha384", wire.Transform{Type: wire.TransformINTEG, ID: wire.AUTH_HMAC_SHA2_384_192}},
	{"sha512", wire.Transform{Type: wire.TransformINTEG, ID: wire.AUTH_HMAC_SHA2_512_256}},
	{"modp2048", wire.Transform{Type: wire.TransformDH, ID: wire.DH_MODP_2048}},
	{"modp3072", wire.Transform{Type: wire.TransformDH, ID: wire.DH_MODP_3072}},
	{"modp4096", wire.Transform{Type: wire.TransformDH, ID: wire.DH_MODP_4096}},
	{"ecp256", wire.Transform{Type: wire.TransformDH, ID: wire.DH_ECP_256}},
	{"ecp384", wire.Transform{Type: wire.TransformDH, ID: wire.DH_ECP_384}},
	{"ecp521", wire.Transform{Type: wire.TransformDH, ID: wire.DH_ECP_521}},
	{"x25519", wire.Transform{Type: wire.TransformDH, ID: wire.DH_CURVE25519}},
	{"esn", wire.Transform{Type: wire.TransformESN, ID: wire.ESN_YES}},
	{"noesn", wire.Transform{Type: wire.TransformESN, ID: wire.ESN_NO}},
}

// aliases are the other spellings strongSwan accepts for the same
// algorithms; "aes256gcm" means the 16-octet ICV variant there too.
var aliases = map[string]string{
	"aes":         "aes128",
	"aes128gcm":   "aes128gcm16",
	"aes256gcm":   "aes256gcm16",
	"sha":         "sha1",
	"sha2_256":    "sha256",
	"sha2_384":    "sha384",
	"sha2_512":    "sha512",
	"prfsha2_256": "prfsha256",
	"prfsha2_384": "prfsha384",
	"prfsha2_512": "prfsha512",
	"curve25519":  "x25519",
}

func keywordNames() string {
	names := make([]string, len(keywords))
	for i, k := range keywords {
		names[i] = k.name
	}
	return strings.Join(names, ", ")
}

func lookupKeyword(s string) (keyword, bool) {
	if a, ok := aliases[s]; ok {
		s = a
	}
	for _, k := range keywords {
		if k.name == s {
			return k, true
		}
	}
	return keyword{}, false
}

// integToPRF is the PRF strongSwan pairs with an integrity algorithm when
// an IKE proposal names no PRF: the HMAC over the same hash.
var integToPRF = map[uint16]uint16{
	wire.AUTH_HMAC_SHA1_96:      wire.PRF_HMAC_SHA1,
	wire.AUTH_HMAC_SHA2_256_128: wire.PRF_HMAC_SHA2_256,
	wire.AUTH_HMAC_SHA2_384_192: wire.PRF_HMAC_SHA2_384,
	wire.AUTH_HMAC_SHA2_512_256: wire.PRF_HMAC_SHA2_512,
}

func prfName(id uint16) string {
	for _, k := range keywords {
		if k.t.Type == wire.TransformPRF && k.t.ID == id {
			return k.name
		}
	}
	return ""
}

// ParseProposal parses one proposal for proto (wire.ProtoIKE or
// wire.ProtoESP). Keywords are separated by '-' and may repeat within a
// type to offer alternatives, as in strongSwan.
//
// Rules, each an error when broken:
//   - at least one cipher; AEAD and non-AEAD ciphers are not mixed;
//   - an AEAD cipher takes no integrity algorithm, any other cipher needs one;
//   - IKE needs a Diffie-Hellman group and a PRF. Without a prf keyword the
//     PRF is the HMAC over each integrity algorithm's hash (strongSwan does
//     the same); with an AEAD cipher there is nothing to derive it from, so
//     the prf keyword is required;
//   - ESP takes no PRF; a group there is the PFS group for CREATE_CHILD_SA;
//     without esn/noesn the proposal offers no ESN only.
func ParseProposal(proto wire.ProtocolID, s string) (Proposal, error) {
	if proto != wire.ProtoIKE && proto != wire.ProtoESP {
		return Proposal{}, fmt.Errorf("unsupported protocol %d", proto)
	}
	p := Proposal{Protocol: proto}
	if strings.TrimSpace(s) == "" {
		return p, fmt.Errorf("empty proposal")
	}
	var names []string
	var n [wire.TransformESN + 1]int
	for _, tok := range strings.Split(s, "-") {
		k, ok := lookupKeyword(strings.ToLower(strings.TrimSpace(tok)))
		if !ok {
			return p, fmt.Errorf("unknown algorithm %q (expected one of: %s)", tok, keywordNames())
		}
		if slices.Contains(p.Transforms, k.t) {
			continue
		}
		p.Transforms = append(p.Transforms, k.t)
		names = append(names, k.name)
		n[k.t.Type]++
	}
	aead, classic := 0, 0
	for _, t := range p.Transforms {
		if t.Type == wire.TransformENCR {
			if isAEAD(t.ID) {
				aead++
			} else {
				classic++
			}
		}
	}
	switch {
	case n[wire.TransformENCR] == 0:
		return p, fmt.Errorf("%q names no cipher (aes128, aes256, aes256gcm16, chacha20poly1305, ...)", s)
	case aead > 0 && classic > 0:
		return p, fmt.Errorf("%q mixes AEAD and non-AEAD ciphers; write them as separate proposals", s)
	case aead > 0 && n[wire.TransformINTEG] > 0:
		return p, fmt.Errorf("%q: an AEAD cipher carries its own integrity check; remove the integrity algorithm", s)
	case aead == 0 && n[wire.TransformINTEG] == 0:
		return p, fmt.Errorf("%q: cipher needs an integrity algorithm (sha256, sha384, sha512 or sha1)", s)
	}
	switch proto {
	case wire.ProtoIKE:
		if n[wire.TransformESN] > 0 {
			return p, fmt.Errorf("%q: esn/noesn apply to ESP, not IKE", s)
		}
		if n[wire.TransformDH] == 0 {
			return p, fmt.Errorf("%q names no key exchange group (x25519, ecp256, modp2048, ...)", s)
		}
		if n[wire.TransformPRF] == 0 {
			if aead > 0 {
				return p, fmt.Errorf("%q: an AEAD cipher needs a PRF in IKE (add prfsha256, prfsha384, ...)", s)
			}
			for _, t := range p.Transforms {
				if t.Type != wire.TransformINTEG {
					continue
				}
				prf := wire.Transform{Type: wire.TransformPRF, ID: integToPRF[t.ID]}
				if !slices.Contains(p.Transforms, prf) {
					p.Transforms = append(p.Transforms, prf)
					names = append(names, prfName(prf.ID))
				}
			}
		}
	case wire.ProtoESP:
		if n[wire.TransformPRF] > 0 {
			return p, fmt.Errorf("%q: a PRF applies to IKE, not ESP", s)
		}
		if n[wire.TransformESN] == 0 {
			p.Transforms = append(p.Transforms, wire.Transform{Type: wire.TransformESN, ID: wire.ESN_NO})
			names = append(names, "noesn")
		}
	}
	p.Text = strings.Join(names, "-")
	return p, nil
}

// Default proposals, used when a connection names none: AEAD with X25519
// first, and a CBC+HMAC fallback for peers without GCM.
var (
	DefaultIKEProposals = []string{"aes256gcm16-prfsha256-x25519", "aes256-sha256-ecp256"}
	DefaultESPProposals = []string{"aes256gcm16", "aes256-sha256"}
)
