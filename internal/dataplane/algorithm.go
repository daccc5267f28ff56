package dataplane

import (
	"fmt"
	"net/netip"
)

// IKEv2 transform IDs the data planes implement (IANA "Internet Key
// Exchange Version 2 (IKEv2) Parameters", Transform Types 1 and 3).
const (
	EncrAESCBC            uint16 = 12 // RFC 3602
	EncrAESGCM16          uint16 = 20 // RFC 4106, 16-octet ICV
	EncrChaCha20Poly1305  uint16 = 28 // RFC 7634
	IntegNone             uint16 = 0
	IntegHMACSHA1_96      uint16 = 2  // RFC 2404
	IntegHMACSHA2_256_128 uint16 = 12 // RFC 4868
	IntegHMACSHA2_384_192 uint16 = 13 // RFC 4868
	IntegHMACSHA2_512_256 uint16 = 14 // RFC 4868
)

// Algorithm is the negotiated ESP transform of an SA.
type Algorithm struct {
	Encr uint16
	// EncrKeyBits is the Key Length attribute of the ENCR transform (128,
	// 192 or 256 for AES; 0 or 256 for ChaCha20-Poly1305, which has none).
	EncrKeyBits int
	// Integ is IntegNone for the AEAD transforms.
	Integ uint16
}

// AEAD reports whether the ENCR transform authenticates on its own.
func (a Algorithm) AEAD() bool {
	return a.Encr == EncrAESGCM16 || a.Encr == EncrChaCha20Poly1305
}

// KeyLen returns the lengths in octets of the ENCR key (including the salt
// of AEAD transforms) and the INTEG key, or an error for a transform this
// package does not support.
func (a Algorithm) KeyLen() (encr, integ int, err error) {
	switch a.Encr {
	case EncrAESCBC, EncrAESGCM16:
		if a.EncrKeyBits != 128 && a.EncrKeyBits != 192 && a.EncrKeyBits != 256 {
			return 0, 0, fmt.Errorf("ENCR %d: key length %d bits, want 128, 192 or 256", a.Encr, a.EncrKeyBits)
		}
		encr = a.EncrKeyBits / 8
		if a.Encr == EncrAESGCM16 {
			encr += 4 // salt, RFC 4106 §8.1
		}
	case EncrChaCha20Poly1305:
		if a.EncrKeyBits != 0 && a.EncrKeyBits != 256 {
			return 0, 0, fmt.Errorf("ENCR %d: key length %d bits, want 256", a.Encr, a.EncrKeyBits)
		}
		encr = 32 + 4 // key and salt, RFC 7634 §2
	default:
		return 0, 0, fmt.Errorf("unsupported ENCR transform %d", a.Encr)
	}
	if a.AEAD() {
		if a.Integ != IntegNone {
			return 0, 0, fmt.Errorf("ENCR %d is an AEAD; INTEG must be NONE, not %d", a.Encr, a.Integ)
		}
		return encr, 0, nil
	}
	switch a.Integ {
	case IntegHMACSHA1_96:
		integ = 20
	case IntegHMACSHA2_256_128:
		integ = 32
	case IntegHMACSHA2_384_192:
		integ = 48
	case IntegHMACSHA2_512_256:
		integ = 64
	case IntegNone:
		return 0, 0, fmt.Errorf("ENCR %d needs an INTEG transform", a.Encr)
	default:
		return 0, 0, fmt.Errorf("unsupported INTEG transform %d", a.Integ)
	}
	return encr, integ, nil
}

// Validate checks what every backend relies on: matching address
// families, a non-zero SPI, a supported transform and keys of the length
// it requires.
func (sa *SA) Validate() error {
	if sa.ID.SPI == 0 {
		return fmt.Errorf("SA %s: SPI 0 is reserved", sa.ID)
	}
	if !sa.ID.Src.IsValid() || !sa.ID.Dst.IsValid() || sa.ID.Src.Is4() != sa.ID.Dst.Is4() {
		return fmt.Errorf("SA %s: outer addresses must both be IPv4 or both IPv6", sa.ID)
	}
	if sa.ID.Src.Is4In6() || sa.ID.Dst.Is4In6() {
		return fmt.Errorf("SA %s: use plain IPv4, not IPv4-mapped IPv6", sa.ID)
	}
	encr, integ, err := sa.Alg.KeyLen()
	if err != nil {
		return fmt.Errorf("SA %s: %w", sa.ID, err)
	}
	if len(sa.EncrKey) != encr || len(sa.IntegKey) != integ {
		return fmt.Errorf("SA %s: key lengths %d/%d octets, want %d/%d", sa.ID, len(sa.EncrKey), len(sa.IntegKey), encr, integ)
	}
	if sa.Encap != nil && (sa.Encap.SrcPort == 0 || sa.Encap.DstPort == 0) {
		return fmt.Errorf("SA %s: UDP encapsulation needs both ports", sa.ID)
	}
	return nil
}

// Validate checks the selectors of a policy set.
func (p *Policies) Validate() error {
	if !p.Local.IsValid() || !p.Remote.IsValid() || p.Local.Is4() != p.Remote.Is4() {
		return fmt.Errorf("policies reqid %d: tunnel endpoints must both be IPv4 or both IPv6", p.ReqID)
	}
	if len(p.LocalTS) == 0 || len(p.RemoteTS) == 0 {
		return fmt.Errorf("policies reqid %d: need local and remote traffic selectors", p.ReqID)
	}
	for _, ts := range append(append([]TrafficSelector(nil), p.LocalTS...), p.RemoteTS...) {
		if err := ts.Validate(); err != nil {
			return fmt.Errorf("policies reqid %d: %w", p.ReqID, err)
		}
	}
	return nil
}

// Validate checks that a selector's ranges are well-formed.
func (ts TrafficSelector) Validate() error {
	if !ts.Start.IsValid() || !ts.End.IsValid() || ts.Start.Is4() != ts.End.Is4() {
		return fmt.Errorf("traffic selector %s: address range of one family needed", ts)
	}
	if ts.End.Less(ts.Start) || ts.EndPort < ts.StartPort {
		return fmt.Errorf("traffic selector %s: range end below start", ts)
	}
	return nil
}

func (ts TrafficSelector) String() string {
	return fmt.Sprintf("%s-%s proto %d ports %d-%d", ts.Start, ts.End, ts.Proto, ts.StartPort, ts.EndPort)
}

// lastAddr is the highest address in a (masked) prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
