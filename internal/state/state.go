// Package state keeps a node's IKE SA records on disk, encrypted, so that
// `hike serve` can restart without dropping a tunnel.
//
// The file is AES-256-GCM under a key from the configuration (never a key
// derived from anything in the file), with a fresh random nonce per write
// and the format version as additional data. Writes go to a temporary file
// that is synced and renamed over the old one, so a crash leaves either the
// old records or the new ones, never a torn file.
package state

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/hike-vpn/hike/internal/ike"
)

const magic = "hike-state-v1\n"

// KeySize is the size of the key that encrypts the file.
const KeySize = 32

// File is the saved state of a node.
type File struct {
	// Clean is set by an orderly shutdown: the counters in the records are
	// exact and no resync is needed. A crash leaves it false.
	Clean   bool         `json:"clean"`
	Saved   time.Time    `json:"saved"`
	Records []ike.Record `json:"records"`
}

// ErrNotFound is returned by Load when there is no state file yet.
var ErrNotFound = errors.New("state: no state file")

// Save writes f to path, encrypted with key.
func Save(path string, key []byte, f *File) error {
	plain, err := json.Marshal(f)
	if err != nil {
		return err
	}
	defer clear(plain)
	aead, err := newAEAD(key)
	if err != nil {
		return err
	}
	out := make([]byte, len(magic)+aead.NonceSize(), len(magic)+aead.NonceSize()+len(plain)+aead.Overhead())
	copy(out, magic)
	nonce := out[len(magic):]
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	out = aead.Seal(out, nonce, plain, []byte(magic))
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".hike-state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(out); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Load reads and decrypts path.
func Load(path string, key []byte) (*File, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(data) < len(magic)+aead.NonceSize()+aead.Overhead() || !bytes.HasPrefix(data, []byte(magic)) {
		return nil, fmt.Errorf("state: %s is not a hike state file", path)
	}
	nonce := data[len(magic) : len(magic)+aead.NonceSize()]
	plain, err := aead.Open(nil, nonce, data[len(magic)+aead.NonceSize():], []byte(magic))
	if err != nil {
		return nil, fmt.Errorf("state: %s does not decrypt with the configured key (wrong key or corrupted file)", path)
	}
	defer clear(plain)
	var f File
	if err := json.Unmarshal(plain, &f); err != nil {
		return nil, fmt.Errorf("state: %s: %w", path, err)
	}
	return &f, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("state: key must be %d bytes, not %d", KeySize, len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}
