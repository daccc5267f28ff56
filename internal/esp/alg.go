package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"
)

// EncrID is an IKEv2 Transform Type 1 (encryption algorithm) ID.
type EncrID uint16

// IKEv2 encryption transform IDs this package implements.
const (
	EncrAESCBC           EncrID = 12 // RFC 3602
	EncrAESGCM16         EncrID = 20 // RFC 4106, 16-octet ICV
	EncrChaCha20Poly1305 EncrID = 28 // RFC 7634
)

// IntegID is an IKEv2 Transform Type 3 (integrity algorithm) ID.
type IntegID uint16

// IKEv2 integrity transform IDs this package implements. IntegNone is the
// only valid choice with an AEAD (RFC 7296 §3.3).
const (
	IntegNone            IntegID = 0
	IntegHMACSHA1_96     IntegID = 2  // RFC 2404
	IntegHMACSHA2_256128 IntegID = 12 // RFC 4868
	IntegHMACSHA2_384192 IntegID = 13 // RFC 4868
	IntegHMACSHA2_512256 IntegID = 14 // RFC 4868
)

const (
	saltLen   = 4 // RFC 4106 §8.1, RFC 7634 §2: keying material ends in a 4-octet salt
	aeadIVLen = 8 // RFC 4106 §3.1, RFC 7634 §2
	aeadICV   = 16
	// ESP requires the Pad Length and Next Header octets to end on a 4-octet
	// boundary even when the cipher has no block size (RFC 4303 §2.4).
	espAlign = 4
)

// suite is the negotiated cryptographic transform of one SA. Exactly one of
// aead or cbc is set.
type suite struct {
	aead cipher.AEAD
	salt [saltLen]byte

	cbc    cipher.BlockMode // encrypter or decrypter, re-IVed per packet
	cbcIV  interface{ SetIV([]byte) }
	mac    hash.Hash
	icvLen int

	ivLen int
	align int
}

func newSuite(cfg *Config) (suite, error) {
	var s suite
	switch cfg.Encr {
	case EncrAESGCM16, EncrChaCha20Poly1305:
		if cfg.Integ != IntegNone || len(cfg.IntegKey) != 0 {
			return s, fmt.Errorf("esp: %v is an AEAD and takes no integrity transform", cfg.Encr)
		}
		n := len(cfg.EncrKey) - saltLen
		var err error
		if cfg.Encr == EncrAESGCM16 {
			if n != 16 && n != 24 && n != 32 {
				return s, fmt.Errorf("esp: AES-GCM keying material must be 20, 28 or 36 octets (key and salt), got %d", len(cfg.EncrKey))
			}
			var b cipher.Block
			if b, err = aes.NewCipher(cfg.EncrKey[:n]); err == nil {
				s.aead, err = cipher.NewGCM(b)
			}
		} else {
			if n != chacha20poly1305.KeySize {
				return s, fmt.Errorf("esp: ChaCha20-Poly1305 keying material must be 36 octets (key and salt), got %d", len(cfg.EncrKey))
			}
			s.aead, err = chacha20poly1305.New(cfg.EncrKey[:n])
		}
		if err != nil {
			return s, fmt.Errorf("esp: %v: %w", cfg.Encr, err)
		}
		copy(s.salt[:], cfg.EncrKey[n:])
		s.ivLen, s.align = aeadIVLen, espAlign
	case EncrAESCBC:
		switch len(cfg.EncrKey) {
		case 16, 24, 32:
		default:
			return s, fmt.Errorf("esp: AES-CBC key must be 16, 24 or 32 octets, got %d", len(cfg.EncrKey))
		}
		b, err := aes.NewCipher(cfg.EncrKey)
		if err != nil {
			return s, fmt.Errorf("esp: AES-CBC: %w", err)
		}
		var zero [aes.BlockSize]byte
		if cfg.Direction == Outbound {
			s.cbc = cipher.NewCBCEncrypter(b, zero[:])
		} else {
			s.cbc = cipher.NewCBCDecrypter(b, zero[:])
		}
		// The standard library's CBC modes can be re-IVed (crypto/tls relies
		// on it), which keeps a per-packet IV from costing an allocation.
		iv, ok := s.cbc.(interface{ SetIV([]byte) })
		if !ok {
			return s, fmt.Errorf("esp: AES-CBC mode cannot be re-IVed")
		}
		s.cbcIV = iv
		s.ivLen, s.align = aes.BlockSize, aes.BlockSize
		var newHash func() hash.Hash
		var keyLen int
		switch cfg.Integ {
		case IntegHMACSHA1_96:
			newHash, keyLen, s.icvLen = sha1.New, 20, 12
		case IntegHMACSHA2_256128:
			newHash, keyLen, s.icvLen = sha256.New, 32, 16
		case IntegHMACSHA2_384192:
			newHash, keyLen, s.icvLen = sha512.New384, 48, 24
		case IntegHMACSHA2_512256:
			newHash, keyLen, s.icvLen = sha512.New, 64, 32
		case IntegNone:
			// RFC 4303 §3.2 allows encryption without integrity only together
			// with a separate integrity service; hike never negotiates it.
			return s, fmt.Errorf("esp: AES-CBC requires an integrity transform")
		default:
			return s, fmt.Errorf("esp: unsupported integrity transform %d", uint16(cfg.Integ))
		}
		// RFC 2404 §3 and RFC 4868 §2.1.1: the key is as long as the hash output.
		if len(cfg.IntegKey) != keyLen {
			return s, fmt.Errorf("esp: %v key must be %d octets, got %d", cfg.Integ, keyLen, len(cfg.IntegKey))
		}
		s.mac = hmac.New(newHash, cfg.IntegKey)
	default:
		return s, fmt.Errorf("esp: unsupported encryption transform %d", uint16(cfg.Encr))
	}
	return s, nil
}

func (s *suite) icvSize() int {
	if s.aead != nil {
		return aeadICV
	}
	return s.icvLen
}

func (e EncrID) String() string {
	switch e {
	case EncrAESCBC:
		return "AES-CBC"
	case EncrAESGCM16:
		return "AES-GCM-16"
	case EncrChaCha20Poly1305:
		return "ChaCha20-Poly1305"
	}
	return fmt.Sprintf("ENCR(%d)", uint16(e))
}

func (i IntegID) String() string {
	switch i {
	case IntegNone:
		return "NONE"
	case IntegHMACSHA1_96:
		return "HMAC-SHA1-96"
	case IntegHMACSHA2_256128:
		return "HMAC-SHA2-256-128"
	case IntegHMACSHA2_384192:
		return "HMAC-SHA2-384-192"
	case IntegHMACSHA2_512256:
		return "HMAC-SHA2-512-256"
	}
	return fmt.Sprintf("INTEG(%d)", uint16(i))
}
