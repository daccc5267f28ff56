package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/hike-vpn/hike/internal/wire"
)

// ErrUnsupported is returned for a transform ID hike does not implement.
var ErrUnsupported = errors.New("crypto: unsupported transform")

// PRF is an HMAC-based pseudo-random function (RFC 7296 §3.3.2). hike
// implements only HMAC PRFs, whose preferred key size is their output size
// (RFC 7296 §2.13), so one Size describes both.
type PRF struct {
	ID   uint16
	Size int
	hash func() hash.Hash
}

// New returns a keyed HMAC for computing prf(key, ...).
func (p *PRF) New(key []byte) hash.Hash { return hmac.New(p.hash, key) }

// Sum appends prf(key, data[0] | data[1] | ...) to dst.
func (p *PRF) Sum(dst, key []byte, data ...[]byte) []byte {
	h := p.New(key)
	for _, d := range data {
		h.Write(d)
	}
	return h.Sum(dst)
}

var (
	prfSHA1   = &PRF{ID: wire.PRF_HMAC_SHA1, Size: sha1.Size, hash: sha1.New}
	prfSHA256 = &PRF{ID: wire.PRF_HMAC_SHA2_256, Size: sha256.Size, hash: sha256.New}
	prfSHA384 = &PRF{ID: wire.PRF_HMAC_SHA2_384, Size: sha512.Size384, hash: sha512.New384}
	prfSHA512 = &PRF{ID: wire.PRF_HMAC_SHA2_512, Size: sha512.Size, hash: sha512.New}
)

// LookupPRF returns the PRF transform with the given ID.
func LookupPRF(id uint16) (*PRF, error) {
	switch id {
	case wire.PRF_HMAC_SHA1:
		return prfSHA1, nil
	case wire.PRF_HMAC_SHA2_256:
		return prfSHA256, nil
	case wire.PRF_HMAC_SHA2_384:
		return prfSHA384, nil
	case wire.PRF_HMAC_SHA2_512:
		return prfSHA512, nil
	}
	return nil, ErrUnsupported
}

// Integ is an HMAC integrity transform with a truncated ICV (RFC 2404,
// RFC 4868). The key is as long as the hash output.
type Integ struct {
	ID     uint16
	KeyLen int
	ICVLen int
	hash   func() hash.Hash
}

// New returns a keyed HMAC; callers truncate its sum to ICVLen.
func (i *Integ) New(key []byte) hash.Hash { return hmac.New(i.hash, key) }

var (
	integSHA1   = &Integ{ID: wire.AUTH_HMAC_SHA1_96, KeyLen: 20, ICVLen: 12, hash: sha1.New}
	integSHA256 = &Integ{ID: wire.AUTH_HMAC_SHA2_256_128, KeyLen: 32, ICVLen: 16, hash: sha256.New}
	integSHA384 = &Integ{ID: wire.AUTH_HMAC_SHA2_384_192, KeyLen: 48, ICVLen: 24, hash: sha512.New384}
	integSHA512 = &Integ{ID: wire.AUTH_HMAC_SHA2_512_256, KeyLen: 64, ICVLen: 32, hash: sha512.New}
)

// LookupInteg returns the integrity transform with the given ID.
func LookupInteg(id uint16) (*Integ, error) {
	switch id {
	case wire.AUTH_HMAC_SHA1_96:
		return integSHA1, nil
	case wire.AUTH_HMAC_SHA2_256_128:
		return integSHA256, nil
	case wire.AUTH_HMAC_SHA2_384_192:
		return integSHA384, nil
	case wire.AUTH_HMAC_SHA2_512_256:
		return integSHA512, nil
	}
	return nil, ErrUnsupported
}

// Encr is an encryption transform: either a block cipher in CBC mode, used
// with a separate Integ, or an AEAD (RFC 5282, RFC 7634) that needs none.
type Encr struct {
	ID      uint16
	KeyBits uint16 // the Key Length attribute; 0 for fixed-size ciphers
	// KeyLen is the key material the transform takes from prf+, including
	// the salt of an AEAD (RFC 5282 §7.1, RFC 7634 §2).
	KeyLen  int
	SaltLen int
	IVLen   int // explicit IV carried in each message
	ICVLen  int // AEAD tag length; 0 for CBC
	Block   int // alignment of the padded plaintext
}

// AEAD reports whether e provides integrity itself.
func (e *Encr) AEAD() bool { return e.ICVLen != 0 }

// NewAEAD returns the AEAD keyed with key, which excludes the salt.
func (e *Encr) NewAEAD(key []byte) (cipher.AEAD, error) {
	switch e.ID {
	case wire.ENCR_AES_GCM_16:
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(b)
	case wire.ENCR_CHACHA20_POLY1305:
		return chacha20poly1305.New(key)
	}
	return nil, ErrUnsupported
}

// NewBlock returns the block cipher for a CBC transform.
func (e *Encr) NewBlock(key []byte) (cipher.Block, error) {
	if e.ID != wire.ENCR_AES_CBC {
		return nil, ErrUnsupported
	}
	return aes.NewCipher(key)
}

var (
	encrAESCBC128 = &Encr{ID: wire.ENCR_AES_CBC, KeyBits: 128, KeyLen: 16, IVLen: 16, Block: 16}
	encrAESCBC192 = &Encr{ID: wire.ENCR_AES_CBC, KeyBits: 192, KeyLen: 24, IVLen: 16, Block: 16}
	encrAESCBC256 = &Encr{ID: wire.ENCR_AES_CBC, KeyBits: 256, KeyLen: 32, IVLen: 16, Block: 16}
	encrGCM128    = &Encr{ID: wire.ENCR_AES_GCM_16, KeyBits: 128, KeyLen: 20, SaltLen: 4, IVLen: 8, ICVLen: 16, Block: 1}
	encrGCM256    = &Encr{ID: wire.ENCR_AES_GCM_16, KeyBits: 256, KeyLen: 36, SaltLen: 4, IVLen: 8, ICVLen: 16, Block: 1}
	encrChaCha    = &Encr{ID: wire.ENCR_CHACHA20_POLY1305, KeyLen: 36, SaltLen: 4, IVLen: 8, ICVLen: 16, Block: 1}
)

// LookupEncr returns the encryption transform with the given ID and Key
// Length attribute (in bits; 0 when the proposal carried none).
func LookupEncr(id, keyBits uint16) (*Encr, error) {
	switch id {
	case wire.ENCR_AES_CBC:
		switch keyBits {
		case 128:
			return encrAESCBC128, nil
		case 192:
			return encrAESCBC192, nil
		case 256:
			return encrAESCBC256, nil
		}
	case wire.ENCR_AES_GCM_16:
		switch keyBits {
		case 128:
			return encrGCM128, nil
		case 256:
			return encrGCM256, nil
		}
	case wire.ENCR_CHACHA20_POLY1305:
		// RFC 7634 §3: the Key Length attribute MUST NOT be sent.
		if keyBits == 0 {
			return encrChaCha, nil
		}
	}
	return nil, ErrUnsupported
}
