package wire

import "encoding/binary"

// KE is a view of a Key Exchange payload (RFC 7296 §3.4). Data aliases the
// parsed buffer.
type KE struct {
	Group uint16
	Data  []byte
}

const keHeaderLen = 4

// keDataLen is the public value size of the groups hike implements: the
// prime's length for MODP (RFC 3526), x || y for ECP (RFC 5903 §7), the
// u-coordinate for Curve25519/448 (RFC 8031 §3.1). 0 for other groups.
func keDataLen(group uint16) int {
	switch group {
	case DH_MODP_2048:
		return 256
	case DH_MODP_3072:
		return 384
	case DH_MODP_4096:
		return 512
	case DH_ECP_256:
		return 64
	case DH_ECP_384:
		return 96
	case DH_ECP_521:
		return 132
	case DH_CURVE25519:
		return 32
	case DH_CURVE448:
		return 56
	}
	return 0
}

// ParseKE decodes a KE payload body. For the groups hike implements the data
// must have the group's exact length (RFC 7296 §3.4 and the group RFCs);
// other groups pass, since choosing the group is not the parser's job and
// INVALID_KE_PAYLOAD, not INVALID_SYNTAX, is the answer to an unwanted one.
func ParseKE(body []byte) (KE, error) {
	if len(body) < keHeaderLen {
		return KE{}, errSyntax(PayloadKE, "truncated key exchange")
	}
	k := KE{Group: binary.BigEndian.Uint16(body[0:2]), Data: body[keHeaderLen:]}
	if n := keDataLen(k.Group); n != 0 && n != len(k.Data) {
		return KE{}, errSyntax(PayloadKE, "key exchange data length wrong for group")
	}
	return k, nil
}

// Append appends the KE payload body to b.
func (k *KE) Append(b []byte) []byte {
	b = append(b, byte(k.Group>>8), byte(k.Group), 0, 0)
	return append(b, k.Data...)
}

// AddKE appends a KE payload.
func (w *Builder) AddKE(k KE) {
	w.End(k.Append(w.Start(PayloadKE, false)))
}
