package crypto

import (
	"encoding/binary"
	"errors"

	"github.com/hike-vpn/hike/internal/wire"
)

// skfNumbersLen is the Fragment Number and Total Fragments fields that
// precede the IV in an Encrypted Fragment payload (RFC 7383 §2.5).
const skfNumbersLen = 4

// ErrFragmentDropped reports a fragment that RFC 7383 §2.6 has the receiver
// discard silently: invalid numbers, a duplicate, or one from an older set
// (a lower Total Fragments) than the one being reassembled.
var ErrFragmentDropped = errors.New("crypto: fragment dropped")

// ErrReassemblyLimit reports that a peer sent more fragments or more octets
// than the reassembler accepts. RFC 7383 §5 suggests treating this as an
// attack or a broken peer and dropping the connection; the fragments
// received so far are discarded either way.
var ErrReassemblyLimit = errors.New("crypto: fragment reassembly limit exceeded")

// SealFragments splits the plaintext chain inner into Encrypted Fragment
// payloads (RFC 7383 §2.5) and appends one complete message per fragment to
// dst, back to back. Each message repeats header h with Next Payload SKF and
// its own Length; the first fragment names first as its Next Payload, the
// others name none.
//
// maxLen is the largest IKE message to produce, from the IKE header on: the
// datagram size less the IP header (20 or 40), the UDP header (8) and, on
// port 4500, the non-ESP marker (4). RFC 7383 §2.5.1 recommends datagrams of
// 1280 octets over IPv6 and 576 over IPv4.
//
// It returns the grown buffer and the fragments as slices of it, appended
// to frags.
func (s *SK) SealFragments(dst []byte, frags [][]byte, h wire.Header, first wire.PayloadType, inner []byte, maxLen int) ([]byte, [][]byte, error) {
	e := s.encr
	avail := maxLen - wire.HeaderLen - wire.GenericHeaderLen - skfNumbersLen - e.IVLen - s.icv()
	chunk := avail/e.Block*e.Block - 1 // room for the pad length octet
	if chunk < 1 {
		return dst, frags, ErrTooLarge
	}
	total := (len(inner) + chunk - 1) / chunk
	if total == 0 {
		total = 1
	}
	if total > 0xffff {
		return dst, frags, ErrTooLarge
	}
	// Reserve the whole output first so that the fragment slices handed back
	// all point into the final backing array.
	need := 0
	for i := 0; i < total; i++ {
		n := min(chunk, len(inner)-i*chunk)
		need += wire.HeaderLen + wire.GenericHeaderLen + skfNumbersLen + e.IVLen + s.padded(n) + s.icv()
	}
	start := len(dst)
	dst = grow(dst, need)[:start]

	var nums [skfNumbersLen]byte
	binary.BigEndian.PutUint16(nums[2:], uint16(total))
	offs := make([]int, 0, total+1)
	for i := 0; i < total; i++ {
		binary.BigEndian.PutUint16(nums[:2], uint16(i+1))
		next := wire.PayloadNone
		if i == 0 {
			next = first
		}
		part := inner[i*chunk : i*chunk+min(chunk, len(inner)-i*chunk)]
		offs = append(offs, len(dst))
		var err error
		dst, err = s.seal(dst, h, wire.PayloadSKF, next, nums[:], part)
		if err != nil {
			return dst[:start], frags, err
		}
	}
	offs = append(offs, len(dst))
	for i := 0; i < total; i++ {
		frags = append(frags, dst[offs[i]:offs[i+1]:offs[i+1]])
	}
	return dst, frags, nil
}

// Default reassembly limits. RFC 7383 §5 advises against accepting more than
// 64 KiB of decrypted content; 256 fragments of that size still allows
// fragments down to the 576-octet IPv4 minimum.
const (
	DefaultMaxReassemblyBytes = 64 << 10
	DefaultMaxFragments       = 256
)

// Reassembler collects the Encrypted Fragment payloads of one message
// (RFC 7383 §2.6). Fragments may arrive in any order; duplicates, fragments
// of an older set and fragments that fail authentication are dropped; a
// fragment with a higher Total Fragments starts the reassembly over.
//
// A Reassembler holds one message at a time: the IKE layer checks the
// Message ID against its window before handing a fragment over, so a
// fragment with another Message ID replaces whatever was being collected.
// The zero value is ready to use with the default limits.
type Reassembler struct {
	// MaxBytes bounds the sum of the decrypted fragment contents, and
	// MaxFragments the Total Fragments accepted; 0 selects the defaults.
	MaxBytes     int
	MaxFragments int

	active bool
	mid    uint32
	total  int
	have   int
	size   int
	first  wire.PayloadType
	parts  [][]byte
}

// Reset discards the fragments collected so far, as RFC 7383 §2.6 asks when
// reassembly times out.
func (r *Reassembler) Reset() {
	r.active = false
	clear(r.parts)
	r.parts = r.parts[:0]
	r.have, r.size, r.total = 0, 0, 0
	r.first = wire.PayloadNone
}

// Add takes the received message msg (wire.Message.Raw) whose last payload
// is the Encrypted Fragment payload skf. When the fragment completes the
// message, done is true and inner is the reassembled plaintext chain, whose
// first payload has type first; inner belongs to the caller.
//
// ErrFragmentDropped and ErrIntegrity mean the fragment was discarded
// silently (RFC 7383 §2.6); ErrReassemblyLimit means the peer exceeded the
// limits and everything collected was discarded.
func (r *Reassembler) Add(sk *SK, msg []byte, skf wire.Payload) (inner []byte, first wire.PayloadType, done bool, err error) {
	if skf.Type != wire.PayloadSKF || len(skf.Body) < skfNumbersLen || len(msg) < wire.HeaderLen {
		return nil, wire.PayloadNone, false, ErrFragmentDropped
	}
	num := int(binary.BigEndian.Uint16(skf.Body[0:2]))
	total := int(binary.BigEndian.Uint16(skf.Body[2:4]))
	mid := binary.BigEndian.Uint32(msg[20:24])
	if num == 0 || total == 0 || num > total {
		return nil, wire.PayloadNone, false, ErrFragmentDropped
	}
	same := r.active && mid == r.mid
	if same {
		if total < r.total {
			return nil, wire.PayloadNone, false, ErrFragmentDropped
		}
		if total == r.total && r.parts[num-1] != nil {
			return nil, wire.PayloadNone, false, ErrFragmentDropped
		}
	}

	ct, err := sk.verify(msg, skf.Body, skfNumbersLen)
	if err != nil {
		return nil, wire.PayloadNone, false, err
	}
	part, err := sk.decrypt(make([]byte, len(ct)), msg, skf.Body, skfNumbersLen, wire.PayloadSKF)
	if err != nil {
		return nil, wire.PayloadNone, false, err
	}

	maxFrags, maxBytes := r.MaxFragments, r.MaxBytes
	if maxFrags <= 0 {
		maxFrags = DefaultMaxFragments
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxReassemblyBytes
	}
	if total > maxFrags {
		r.Reset()
		return nil, wire.PayloadNone, false, ErrReassemblyLimit
	}
	if !same || total > r.total {
		r.Reset()
		r.active, r.mid, r.total = true, mid, total
		if cap(r.parts) < total {
			r.parts = make([][]byte, total)
		}
		r.parts = r.parts[:total]
	}
	if r.size+len(part) > maxBytes {
		r.Reset()
		return nil, wire.PayloadNone, false, ErrReassemblyLimit
	}
	r.parts[num-1] = part
	r.have++
	r.size += len(part)
	if num == 1 {
		r.first = skf.Next
	}
	if r.have < r.total {
		return nil, wire.PayloadNone, false, nil
	}

	// The output is not kept: an idle IKE SA should not pin up to 64 KiB.
	out := make([]byte, 0, r.size)
	for _, p := range r.parts {
		out = append(out, p...)
	}
	first = r.first
	r.Reset()
	return out, first, true, nil
}
