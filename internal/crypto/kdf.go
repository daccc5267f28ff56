package crypto

import (
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// ErrKeyMaterialTooLong is returned when prf+ is asked for more than 255
// blocks, where its one-octet counter would wrap (RFC 7296 §2.13).
var ErrKeyMaterialTooLong = errors.New("crypto: prf+ output exceeds 255 blocks")

var errNegativeKeyLen = errors.New("crypto: negative key length")

var errAEADInteg = errors.New("crypto: integrity transform must be absent with an AEAD and present without one")

// Plus fills dst with prf+(key, seed[0] | seed[1] | ...) of RFC 7296 §2.13:
// T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n). dst must not overlap
// seed.
func (p *PRF) Plus(dst, key []byte, seed ...[]byte) error {
	if len(dst) > 255*p.Size {
		return ErrKeyMaterialTooLong
	}
	h := p.New(key)
	var tbuf [sha512.Size]byte // the largest PRF output hike implements
	var t []byte
	var n [1]byte
	for off := 0; off < len(dst); {
		h.Reset()
		h.Write(t)
		for _, s := range seed {
			h.Write(s)
		}
		n[0]++
		h.Write(n[:])
		t = h.Sum(tbuf[:0])
		off += copy(dst[off:], t)
	}
	clear(tbuf[:])
	return nil
}

// skeyseed returns prf(Ni | Nr, g^ir) (RFC 7296 §2.14). All of hike's PRFs
// are HMACs, so the 64-bit nonce truncation §2.14 asks of AES-XCBC and
// AES-CMAC PRFs does not arise.
func skeyseed(p *PRF, ni, nr, gir []byte) []byte {
	key := make([]byte, 0, len(ni)+len(nr))
	key = append(append(key, ni...), nr...)
	return p.Sum(nil, key, gir)
}

// rekeySKEYSEED returns prf(SK_d(old), g^ir(new) | Ni | Nr) (RFC 7296
// §2.18). The rekeying exchange belongs to the old IKE SA, so p is the old
// SA's PRF even when the new SA negotiated another.
func rekeySKEYSEED(p *PRF, oldSKd, gir, ni, nr []byte) []byte {
	return p.Sum(nil, oldSKd, gir, ni, nr)
}

// IKEKeys are the seven secrets of an IKE SA (RFC 7296 §2.14). With an AEAD
// (RFC 5282) Ai and Ar are empty and Ei and Er end with the salt.
//
// IKEKeys formats as "[redacted]" under every fmt verb and in slog, so that
// a stray log line cannot leak them. Call Zero when the SA dies.
//
// The derived keys share one buffer, but IKEKeys keeps no header of its own
// for it: the seven keys cover it, and an eighth slice would push the
// struct from the 176-octet size class to 192, for every SA.
type IKEKeys struct {
	D      []byte // SK_d, keys Child SAs and the next IKE SA
	Ai, Ar []byte // SK_ai, SK_ar: integrity of messages from initiator, responder
	Ei, Er []byte // SK_ei, SK_er: encryption of messages from initiator, responder
	Pi, Pr []byte // SK_pi, SK_pr: AUTH payload of initiator, responder
}

// NewIKEKeys derives the keys of a new IKE SA from IKE_SA_INIT:
// SKEYSEED = prf(Ni | Nr, g^ir) and then prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
// split into SK_d, SK_ai, SK_ar, SK_ei, SK_er, SK_pi, SK_pr with the lengths
// the negotiated transforms take. integ is nil exactly when encr is an AEAD.
func NewIKEKeys(prf *PRF, encr *Encr, integ *Integ, gir, ni, nr []byte, spii, spir uint64) (*IKEKeys, error) {
	seed := skeyseed(prf, ni, nr, gir)
	defer clear(seed)
	return deriveIKEKeys(prf, encr, integ, seed, ni, nr, spii, spir)
}

// RekeyIKEKeys derives the keys of the IKE SA that replaces the one whose
// PRF and SK_d are oldPRF and oldSKd (RFC 7296 §2.18): SKEYSEED =
// prf(SK_d(old), g^ir(new) | Ni | Nr), then the split of NewIKEKeys with the
// new SA's transforms and SPIs. Ni and Nr are the CREATE_CHILD_SA nonces.
func RekeyIKEKeys(oldPRF *PRF, oldSKd []byte, prf *PRF, encr *Encr, integ *Integ, gir, ni, nr []byte, spii, spir uint64) (*IKEKeys, error) {
	seed := rekeySKEYSEED(oldPRF, oldSKd, gir, ni, nr)
	defer clear(seed)
	return deriveIKEKeys(prf, encr, integ, seed, ni, nr, spii, spir)
}

func deriveIKEKeys(prf *PRF, encr *Encr, integ *Integ, seed, ni, nr []byte, spii, spir uint64) (*IKEKeys, error) {
	if encr.AEAD() != (integ == nil) {
		return nil, errAEADInteg
	}
	var aLen int
	if integ != nil {
		aLen = integ.KeyLen
	}
	eLen := encr.KeyLen
	buf := make([]byte, 3*prf.Size+2*aLen+2*eLen)
	var spis [16]byte
	binary.BigEndian.PutUint64(spis[:8], spii)
	binary.BigEndian.PutUint64(spis[8:], spir)
	if err := prf.Plus(buf, seed, ni, nr, spis[:]); err != nil {
		return nil, err
	}
	k := &IKEKeys{}
	s := splitter{buf}
	k.D = s.next(prf.Size)
	k.Ai, k.Ar = s.next(aLen), s.next(aLen)
	k.Ei, k.Er = s.next(eLen), s.next(eLen)
	k.Pi, k.Pr = s.next(prf.Size), s.next(prf.Size)
	return k, nil
}

// Zero overwrites the keys and drops them.
func (k *IKEKeys) Zero() {
	for _, b := range [...][]byte{k.D, k.Ai, k.Ar, k.Ei, k.Er, k.Pi, k.Pr} {
		clear(b)
	}
	*k = IKEKeys{}
}

// Format keeps the keys out of fmt output whatever the verb.
func (IKEKeys) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }

// LogValue keeps the keys out of slog output, including handlers that would
// marshal the struct's fields.
func (IKEKeys) LogValue() slog.Value { return slog.StringValue(redacted) }

// ChildKeys are the KEYMAT of a Child SA pair (RFC 7296 §2.17): one
// encryption and one integrity key for the SA carrying traffic from the
// initiator of the exchange, and one pair for the opposite direction. With
// an AEAD the integrity keys are empty and the encryption keys end with the
// salt. ChildKeys format as "[redacted]" like IKEKeys.
type ChildKeys struct {
	InitEncr, InitInteg []byte // initiator to responder
	RespEncr, RespInteg []byte // responder to initiator

	buf []byte
}

// DeriveChildKeys computes KEYMAT = prf+(SK_d, [g^ir(new) |] Ni | Nr) for a
// Child SA whose encryption and integrity keys are encrKeyLen and
// integKeyLen octets (the encryption length includes any AEAD salt). gir is
// nil unless the exchange ran a PFS Diffie-Hellman. Ni and Nr are the
// IKE_SA_INIT nonces for the first Child SA, else those of CREATE_CHILD_SA.
func DeriveChildKeys(prf *PRF, skd, gir, ni, nr []byte, encrKeyLen, integKeyLen int) (*ChildKeys, error) {
	if encrKeyLen < 0 || integKeyLen < 0 {
		return nil, errNegativeKeyLen
	}
	buf := make([]byte, 2*(encrKeyLen+integKeyLen))
	if err := prf.Plus(buf, skd, gir, ni, nr); err != nil {
		return nil, err
	}
	k := &ChildKeys{buf: buf}
	s := splitter{buf}
	k.InitEncr, k.InitInteg = s.next(encrKeyLen), s.next(integKeyLen)
	k.RespEncr, k.RespInteg = s.next(encrKeyLen), s.next(integKeyLen)
	return k, nil
}

// Zero overwrites the keys and drops them.
func (k *ChildKeys) Zero() {
	for _, b := range [...][]byte{k.InitEncr, k.InitInteg, k.RespEncr, k.RespInteg, k.buf} {
		clear(b)
	}
	*k = ChildKeys{}
}

// Format keeps the keys out of fmt output whatever the verb.
func (ChildKeys) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }

// LogValue keeps the keys out of slog output.
func (ChildKeys) LogValue() slog.Value { return slog.StringValue(redacted) }

const redacted = "[redacted]"

// splitter hands out consecutive slices of key material. Each slice is
// capped so that an append by a caller cannot run into the next key.
type splitter struct{ b []byte }

func (s *splitter) next(n int) []byte {
	if n == 0 {
		return nil
	}
	k := s.b[:n:n]
	s.b = s.b[n:]
	return k
}
