package crypto

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"hash"

	"github.com/hike-vpn/hike/internal/wire"
)

// ErrIntegrity reports that a protected payload did not authenticate: a bad
// ICV or AEAD tag, or a payload too short or misaligned to carry one. RFC 7296
// §2.21 has the receiver drop such a message silently and keep no state.
var ErrIntegrity = errors.New("crypto: integrity check failed")

// ErrIVExhausted reports that the 64-bit AEAD IV counter of an SA has run
// out. The SA must be rekeyed long before; this guards against wrapping.
var ErrIVExhausted = errors.New("crypto: AEAD IV counter exhausted")

// ErrTooLarge reports that a sealed message would not fit the 16-bit payload
// length or the 32-bit message length, or that fragments would not fit the
// datagram size given.
var ErrTooLarge = errors.New("crypto: message does not fit")

var errNotTail = errors.New("crypto: encrypted payload is not the tail of the message")

// SK protects the Encrypted payload (RFC 7296 §3.14, RFC 5282) and the
// Encrypted Fragment payload (RFC 7383) of one IKE SA, in both directions.
//
// An SK keeps per-direction scratch space so that sealing and opening do not
// allocate; it is not safe for concurrent use. hike serializes the exchanges
// of an IKE SA on its shard's worker, which is the only caller.
//
// A concentrator holds tens of thousands of SKs, nearly all of them with an
// AEAD, so the struct holds only what an AEAD needs (96 octets, a size class
// of its own); the CBC and HMAC state lives behind cbc, allocated only for
// the suites that use it.
type SK struct {
	encr *Encr
	cbc  *skCBC // nil for an AEAD
	out  aeadDir
	in   aeadDir
	// iv is the next explicit IV an AEAD sends. RFC 5282 §3.1 lets it be a
	// counter as long as it never repeats under one key.
	iv      uint64
	ivSpent bool
	icvLen  uint8 // at most 32 (HMAC-SHA2-512-256); a byte keeps the struct at 96 octets
}

// aeadDir is one direction's AEAD and nonce. The nonce lives here rather
// than on the stack because it is handed to cipher.AEAD, an interface, which
// would make the compiler move a stack array to the heap on every call.
type aeadDir struct {
	aead  cipher.AEAD
	nonce [12]byte // salt | IV; both AEADs of RFC 5282 and RFC 7634 take 12 octets
}

// skCBC is the state of a CBC suite with a separate HMAC, both directions.
type skCBC struct {
	out, in cbcDir
}

// cbcDir is one direction's CBC and HMAC state; sum is scratch space for the
// same reason as aeadDir.nonce.
type cbcDir struct {
	block cipher.Block
	mode  cipher.BlockMode // reused through SetIV when the mode allows it
	mac   hash.Hash
	sum   [64]byte // HMAC output before truncation
}

// ivSetter is implemented by the standard library's CBC modes; it lets one
// BlockMode serve every message of an SA.
type ivSetter interface{ SetIV([]byte) }

// NewSK builds the SK protection of an IKE SA from its negotiated transforms
// and keys (only SK_a and SK_e are used). integ is ignored (and may be nil)
// when encr is an AEAD. initiator reports whether we are the original initiator of the IKE SA
// (after an IKE rekey: the initiator of the rekey, RFC 7296 §2.18), which
// decides that we send with SK_ei/SK_ai and receive with SK_er/SK_ar.
//
// The keys are not retained: the ciphers and MACs hold their own schedules.
func NewSK(encr *Encr, integ *Integ, k *IKEKeys, initiator bool) (*SK, error) {
	if encr == nil || k == nil {
		return nil, ErrUnsupported
	}
	s := &SK{encr: encr}
	oe, ie, oa, ia := k.Ei, k.Er, k.Ai, k.Ar
	if !initiator {
		oe, ie, oa, ia = k.Er, k.Ei, k.Ar, k.Ai
	}
	if encr.AEAD() {
		if encr.SaltLen+encr.IVLen != len(s.out.nonce) || encr.ICVLen > 0xff {
			return nil, ErrUnsupported
		}
		s.icvLen = uint8(encr.ICVLen)
		for _, d := range [...]struct {
			dir *aeadDir
			key []byte
		}{{&s.out, oe}, {&s.in, ie}} {
			if len(d.key) != encr.KeyLen {
				return nil, errors.New("crypto: SK_e length does not match ENCR")
			}
			n := len(d.key) - encr.SaltLen
			a, err := encr.NewAEAD(d.key[:n])
			if err != nil {
				return nil, err
			}
			if a.NonceSize() != encr.SaltLen+encr.IVLen || a.Overhead() != encr.ICVLen {
				return nil, ErrUnsupported
			}
			d.dir.aead = a
			copy(d.dir.nonce[:], d.key[n:])
		}
		return s, nil
	}
	if integ == nil || integ.ICVLen > len(cbcDir{}.sum) {
		return nil, ErrUnsupported
	}
	s.icvLen = uint8(integ.ICVLen)
	c := &skCBC{}
	var zeroIV [16]byte
	for _, d := range [...]struct {
		dir       *cbcDir
		ekey, key []byte
		enc       bool
	}{{&c.out, oe, oa, true}, {&c.in, ie, ia, false}} {
		if len(d.ekey) != encr.KeyLen {
			return nil, errors.New("crypto: SK_e length does not match ENCR")
		}
		if len(d.key) != integ.KeyLen {
			return nil, errors.New("crypto: SK_a length does not match INTEG")
		}
		b, err := encr.NewBlock(d.ekey)
		if err != nil {
			return nil, err
		}
		d.dir.block = b
		if d.enc {
			d.dir.mode = cipher.NewCBCEncrypter(b, zeroIV[:b.BlockSize()])
		} else {
			d.dir.mode = cipher.NewCBCDecrypter(b, zeroIV[:b.BlockSize()])
		}
		if _, ok := d.dir.mode.(ivSetter); !ok {
			d.dir.mode = nil
		}
		d.dir.mac = integ.New(d.key)
	}
	s.cbc = c
	return s, nil
}

// Overhead returns how many octets protection adds to an inner chain of
// length n: the SK generic header, IV, padding, pad length and ICV. The IKE
// header is not included.
func (s *SK) Overhead(n int) int {
	return wire.GenericHeaderLen + s.encr.IVLen + s.padded(n) - n + s.icv()
}

// icv returns the length of the ICV or AEAD tag that ends each message.
func (s *SK) icv() int { return int(s.icvLen) }

// padded returns the length of the encrypted plaintext for n octets of inner
// payloads: RFC 7296 §3.14 pads to the cipher's block and always carries the
// pad length octet; an AEAD has no alignment (RFC 5282 §3), so it sends no
// padding beyond that octet.
func (s *SK) padded(n int) int {
	b := s.encr.Block
	n++
	return n + (b-n%b)%b
}

// NextIV returns the explicit IV the next AEAD message will carry. A cluster
// replicates a mark above it so that a member taking over the SA can resume
// past every IV the failed one may have used: RFC 6311 §3.4 forbids reusing
// a counter-based IV, including after failover.
func (s *SK) NextIV() uint64 { return s.iv }

// AdvanceIV moves the IV counter to at least next. It never moves it back,
// so calling it with a stale mark is harmless.
func (s *SK) AdvanceIV(next uint64) {
	if next > s.iv {
		s.iv = next
	}
}

// Seal appends the protected message to dst: the IKE header h (Next Payload
// SK, Length filled in), the SK payload whose Next Payload is first, the IV,
// the encrypted inner chain with its padding, and the ICV. inner is the
// plaintext chain, typically built with wire.Builder.ResetChain; it must not
// overlap the part of dst's backing array that Seal writes.
func (s *SK) Seal(dst []byte, h wire.Header, first wire.PayloadType, inner []byte) ([]byte, error) {
	return s.seal(dst, h, wire.PayloadSK, first, nil, inner)
}

// seal builds an SK payload, or an SKF payload when frag holds its Fragment
// Number and Total Fragments. Both are protected the same way: everything up
// to the IV is authenticated data (RFC 5282 §5.1; for SKF this includes the
// fragment numbers, RFC 7383 §2.5).
func (s *SK) seal(dst []byte, h wire.Header, typ, first wire.PayloadType, frag []byte, inner []byte) ([]byte, error) {
	e := s.encr
	plen := s.padded(len(inner))
	payloadLen := wire.GenericHeaderLen + len(frag) + e.IVLen + plen + s.icv()
	msgLen := wire.HeaderLen + payloadLen
	if payloadLen > 0xffff {
		return dst, ErrTooLarge
	}
	var ivc uint64
	if e.AEAD() {
		if s.ivSpent {
			return dst, ErrIVExhausted
		}
		ivc = s.iv
	}

	start := len(dst)
	h.NextPayload = typ
	h.Length = uint32(msgLen)
	dst = h.Append(dst)
	dst = wire.AppendPayloadHeader(dst, first, false, payloadLen)
	dst = append(dst, frag...)
	aadEnd := len(dst)
	dst = grow(dst, e.IVLen+plen+s.icv())
	iv := dst[aadEnd : aadEnd+e.IVLen]
	pt := dst[aadEnd+e.IVLen : aadEnd+e.IVLen+plen]
	copy(pt, inner)
	// Padding may hold any value (RFC 7296 §3.14); zeros leak nothing.
	clear(pt[len(inner):])
	pt[plen-1] = byte(plen - len(inner) - 1)

	if e.AEAD() {
		d := &s.out
		binary.BigEndian.PutUint64(iv, ivc)
		n := d.nonce[:e.SaltLen+e.IVLen]
		copy(n[e.SaltLen:], iv)
		d.aead.Seal(pt[:0], n, pt, dst[start:aadEnd])
		s.iv++
		if s.iv == 0 {
			s.ivSpent = true
		}
		return dst, nil
	}
	// CBC IVs must be unpredictable (RFC 7296 §3.14), hence random.
	if _, err := rand.Read(iv); err != nil {
		return dst[:start], err
	}
	d := &s.cbc.out
	d.cbcMode(iv, true).CryptBlocks(pt, pt)
	icvAt := len(dst) - s.icv()
	d.mac.Reset()
	d.mac.Write(dst[start:icvAt])
	copy(dst[icvAt:], d.mac.Sum(d.sum[:0]))
	return dst, nil
}

func (d *cbcDir) cbcMode(iv []byte, enc bool) cipher.BlockMode {
	if d.mode != nil {
		d.mode.(ivSetter).SetIV(iv)
		return d.mode
	}
	if enc {
		return cipher.NewCBCEncrypter(d.block, iv)
	}
	return cipher.NewCBCDecrypter(d.block, iv)
}

// grow extends b by n octets, reallocating only when capacity runs out.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	return append(b, make([]byte, n)...)
}

// Open verifies and decrypts the SK payload sk of the received message msg
// and appends the plaintext inner chain to dst. msg is the whole message as
// parsed (wire.Message.Raw) and sk the view of its SK payload, which must be
// its last payload. It returns the inner chain and the type of its first
// payload, which the caller parses with wire.ParseChain.
//
// Integrity is checked before anything is decrypted. ErrIntegrity means the
// message must be dropped silently; a *wire.Error (INVALID_SYNTAX) means the
// message authenticated but its padding is malformed.
func (s *SK) Open(dst, msg []byte, sk wire.Payload) ([]byte, wire.PayloadType, error) {
	ct, err := s.verify(msg, sk.Body, 0)
	if err != nil {
		return dst, wire.PayloadNone, err
	}
	start := len(dst)
	dst = grow(dst, len(ct))
	pt, err := s.decrypt(dst[start:], msg, sk.Body, 0, wire.PayloadSK)
	if err != nil {
		return dst[:start], wire.PayloadNone, err
	}
	return dst[:start+len(pt)], sk.Next, nil
}

// OpenInPlace is Open without a destination buffer: the ciphertext in msg is
// overwritten by the plaintext, and the returned chain aliases msg. Use it
// when the raw message is no longer needed (for example, when the response
// cache keys on the Message ID rather than the request's octets).
func (s *SK) OpenInPlace(msg []byte, sk wire.Payload) ([]byte, wire.PayloadType, error) {
	ct, err := s.verify(msg, sk.Body, 0)
	if err != nil {
		return nil, wire.PayloadNone, err
	}
	pt, err := s.decrypt(ct, msg, sk.Body, 0, wire.PayloadSK)
	if err != nil {
		return nil, wire.PayloadNone, err
	}
	return pt, sk.Next, nil
}

// verify checks that body is the tail of msg and holds a well-formed,
// authentic payload whose first skip octets (the SKF fragment numbers) come
// before the IV. It returns the ciphertext; for an AEAD the tag is checked
// in decrypt, which cannot be split from decryption.
func (s *SK) verify(msg, body []byte, skip int) ([]byte, error) {
	e := s.encr
	if len(body) < skip+e.IVLen+s.icv()+1 || len(msg) < wire.HeaderLen+wire.GenericHeaderLen+len(body) {
		return nil, ErrIntegrity
	}
	// The AAD and the HMAC input are the octets of msg in front of body, so
	// body must really be msg's tail and not some other buffer.
	if &msg[len(msg)-1] != &body[len(body)-1] {
		return nil, errNotTail
	}
	ctLen := len(body) - skip - e.IVLen - s.icv()
	if ctLen%e.Block != 0 {
		return nil, ErrIntegrity
	}
	ct := body[skip+e.IVLen : skip+e.IVLen+ctLen]
	if e.AEAD() {
		return ct, nil
	}
	d := &s.cbc.in
	icvAt := len(msg) - s.icv()
	d.mac.Reset()
	d.mac.Write(msg[:icvAt])
	sum := d.mac.Sum(d.sum[:0])
	if !hmac.Equal(sum[:s.icv()], msg[icvAt:]) {
		return nil, ErrIntegrity
	}
	return ct, nil
}

// decrypt decrypts the ciphertext of body into out (len(out) ≥ ciphertext
// length; out may be the ciphertext itself) and strips the padding.
func (s *SK) decrypt(out, msg, body []byte, skip int, typ wire.PayloadType) ([]byte, error) {
	e := s.encr
	iv := body[skip : skip+e.IVLen]
	ct := body[skip+e.IVLen : len(body)-s.icv()]
	var pt []byte
	if e.AEAD() {
		d := &s.in
		n := d.nonce[:e.SaltLen+e.IVLen]
		copy(n[e.SaltLen:], iv)
		aadEnd := len(msg) - len(body) + skip
		var err error
		// The tag follows the ciphertext in body, as cipher.AEAD expects.
		pt, err = d.aead.Open(out[:0], n, body[skip+e.IVLen:], msg[:aadEnd])
		if err != nil {
			return nil, ErrIntegrity
		}
	} else {
		pt = out[:len(ct)]
		s.cbc.in.cbcMode(iv, false).CryptBlocks(pt, ct)
	}
	pad := int(pt[len(pt)-1])
	if pad+1 > len(pt) {
		return nil, &wire.Error{Notify: wire.INVALID_SYNTAX, Payload: typ, Reason: "pad length exceeds plaintext"}
	}
	return pt[:len(pt)-1-pad], nil
}
