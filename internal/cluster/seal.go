package cluster

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/hike-vpn/hike/internal/ike"
)

// KeySize is the size of the cluster key that seals SA records.
const KeySize = 32

// Records carry IKE and ESP keys. They enter raft sealed with AES-256-GCM,
// so neither the log nor a snapshot (which stores the sealed bytes as they
// are) ever holds key material in the clear, and a witness needs no key.
//
// GCM with random 96-bit nonces is limited to about 2^32 messages per key;
// records are rewritten on every rekey and reservation renewal, so one key
// for the cluster's lifetime could get there. Each sealing call therefore
// derives a fresh key from the cluster key and a random 16-byte salt (HKDF-
// SHA256) and numbers its records as nonces: a (key, nonce) pair is never
// used twice, and the cluster key itself never touches GCM.
//
// Sealed record: version(1) | salt(16) | index(4) | ciphertext | tag(16).
// The additional data binds the version and the SPIs, so a sealed record
// cannot be replayed under another SA's key.
const (
	sealVersion = 1
	saltSize    = 16
	sealHeader  = 1 + saltSize + 4
	sealLabel   = "hike cluster SA records v1"
)

// ReadKeyFile reads a cluster key: 64 hex digits, surrounding white space
// ignored (the format of the state key).
func ReadKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster: key: %w", err)
	}
	defer clear(b)
	k, err := hex.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil || len(k) != KeySize {
		clear(k)
		return nil, fmt.Errorf("cluster: key file %s must hold %d bytes as hex", path, KeySize)
	}
	return k, nil
}

type sealer struct {
	key []byte
}

func (s *sealer) aead(salt []byte) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, s.key, salt, sealLabel, KeySize)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func sealAD(ad *[17]byte, k SAKey) []byte {
	ad[0] = sealVersion
	binary.BigEndian.PutUint64(ad[1:], k.SPIi)
	binary.BigEndian.PutUint64(ad[9:], k.SPIr)
	return ad[:]
}

// seal turns records into put operations under one derived key.
func (s *sealer) seal(recs []ike.Record) ([]saOp, error) {
	if len(recs) >= 1<<32 {
		return nil, errors.New("cluster: too many records in one call")
	}
	var salt [saltSize]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return nil, err
	}
	a, err := s.aead(salt[:])
	if err != nil {
		return nil, err
	}
	ops := make([]saOp, len(recs))
	var nonce [12]byte
	var ad [17]byte
	for i := range recs {
		plain, err := json.Marshal(&recs[i])
		if err != nil {
			return nil, err
		}
		k := SAKey{recs[i].SPIi, recs[i].SPIr}
		out := make([]byte, sealHeader, sealHeader+len(plain)+a.Overhead())
		out[0] = sealVersion
		copy(out[1:], salt[:])
		binary.BigEndian.PutUint32(out[1+saltSize:], uint32(i))
		binary.BigEndian.PutUint32(nonce[8:], uint32(i))
		out = a.Seal(out, nonce[:], plain, sealAD(&ad, k))
		clear(plain)
		ops[i] = saOp{key: k, local: recs[i].Local.Addr().Unmap(), blob: out}
	}
	return ops, nil
}

var errOpen = errors.New("cluster: a record does not decrypt with the cluster key (wrong key or corrupted)")

// open decrypts one sealed record; cache avoids deriving the same key again
// for records that were sealed together.
func (s *sealer) open(k SAKey, blob []byte, cache map[[saltSize]byte]cipher.AEAD) (ike.Record, error) {
	var r ike.Record
	if len(blob) < sealHeader+16 || blob[0] != sealVersion {
		return r, errOpen
	}
	var salt [saltSize]byte
	copy(salt[:], blob[1:])
	a := cache[salt]
	if a == nil {
		var err error
		if a, err = s.aead(salt[:]); err != nil {
			return r, err
		}
		cache[salt] = a
	}
	var nonce [12]byte
	copy(nonce[8:], blob[1+saltSize:sealHeader])
	var ad [17]byte
	plain, err := a.Open(nil, nonce[:], blob[sealHeader:], sealAD(&ad, k))
	if err != nil {
		return r, errOpen
	}
	defer clear(plain)
	if err := json.Unmarshal(plain, &r); err != nil {
		return r, fmt.Errorf("cluster: record %x/%x: %w", k.SPIi, k.SPIr, err)
	}
	return r, nil
}
