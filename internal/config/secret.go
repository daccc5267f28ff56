package config

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

const redacted = "[redacted]"

// Secret holds key material from the configuration: a pre-shared key or
// the state encryption key. Every way of printing it (fmt verbs, slog,
// JSON, YAML) yields "[redacted]", so a Config can be logged or dumped
// without leaking it.
type Secret struct{ b []byte }

// Bytes returns the secret. The slice is shared; do not modify it.
func (s Secret) Bytes() []byte { return s.b }

// IsZero reports whether no secret is set.
func (s Secret) IsZero() bool { return len(s.b) == 0 }

func (s Secret) String() string               { return redacted }
func (s Secret) GoString() string             { return redacted }
func (s Secret) Format(f fmt.State, _ rune)   { f.Write([]byte(redacted)) }
func (s Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (s Secret) MarshalYAML() (any, error)    { return redacted, nil }

// minPSK is the shortest pre-shared key accepted, in characters or, for
// hex keys, in bytes. Short PSKs fall to offline dictionary attacks on a
// captured IKE_AUTH (RFC 7296 §2.15 warns about exactly this).
const minPSK = 16

// parsePSK turns the configured text into key bytes. "0x" followed by hex
// digits is binary; anything else is used as written. The error never
// contains the key.
func parsePSK(s string) (Secret, error) {
	if h, ok := strings.CutPrefix(s, "0x"); ok {
		b, err := hex.DecodeString(h)
		if err != nil {
			return Secret{}, errors.New("pre-shared key starts with 0x but is not valid hex")
		}
		if len(b) < minPSK {
			return Secret{}, fmt.Errorf("pre-shared key is too short: hex keys need at least %d bytes", minPSK)
		}
		return Secret{b}, nil
	}
	if len(s) < minPSK {
		return Secret{}, fmt.Errorf("pre-shared key is too short: at least %d characters (or 0x-prefixed hex)", minPSK)
	}
	return Secret{[]byte(s)}, nil
}

// StateKeySize is the length of the key that encrypts persisted SA records.
const StateKeySize = 32

// readStateKey reads a key file holding StateKeySize bytes as hex, with
// optional surrounding whitespace.
func readStateKey(path string) (Secret, error) {
	data, err := readSmallFile(path)
	if err != nil {
		return Secret{}, fileError(path, err)
	}
	h := strings.TrimSpace(string(data))
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != StateKeySize {
		return Secret{}, fmt.Errorf("%s: expected %d hexadecimal characters (a %d-byte key), e.g. from: head -c %d /dev/urandom | xxd -p -c %d",
			path, 2*StateKeySize, StateKeySize, StateKeySize, StateKeySize)
	}
	return Secret{b}, nil
}

// PrivateKey is a parsed private key whose printed forms are redacted.
type PrivateKey struct{ s crypto.Signer }

// Signer returns the key (an *ecdsa.PrivateKey, *rsa.PrivateKey or
// ed25519.PrivateKey), or nil when none was configured.
func (k PrivateKey) Signer() crypto.Signer { return k.s }

func (k PrivateKey) String() string             { return redacted }
func (k PrivateKey) GoString() string           { return redacted }
func (k PrivateKey) Format(f fmt.State, _ rune) { f.Write([]byte(redacted)) }
func (k PrivateKey) LogValue() slog.Value       { return slog.StringValue(redacted) }
func (k PrivateKey) MarshalText() ([]byte, error) {
	return []byte(redacted), nil
}

// maxFileSize bounds files the configuration points at (certificates,
// keys, secrets); none is legitimately larger.
const maxFileSize = 1 << 20

// readSmallFile reads a regular file of at most maxFileSize bytes, so that
// a path pointing at a FIFO or /dev/zero fails instead of hanging.
func readSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	return data, nil
}

// fileError words a file problem so that the file is named once.
func fileError(path string, err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s: %v", path, err)
}

// readCerts reads one or more X.509 certificates, PEM (any number of
// CERTIFICATE blocks) or a single DER certificate.
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := readSmallFile(path)
	if err != nil {
		return nil, fileError(path, err)
	}
	var certs []*x509.Certificate
	rest := data
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("%s: no PEM certificate found and not a DER certificate", path)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// readKey reads a PEM private key (PKCS#8, SEC 1 EC or PKCS#1 RSA). Its
// errors describe the form, never the content.
func readKey(path string) (crypto.Signer, error) {
	data, err := readSmallFile(path)
	if err != nil {
		return nil, fileError(path, err)
	}
	for rest := data; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		var key any
		switch blk.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("%s: encrypted private keys are not supported; store the key unencrypted with mode 0600", path)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %s block does not parse", path, blk.Type)
		}
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			return k, nil
		case *rsa.PrivateKey:
			return k, nil
		case ed25519.PrivateKey:
			return k, nil
		}
		return nil, fmt.Errorf("%s: unsupported key type %T (want RSA, ECDSA or Ed25519)", path, key)
	}
	return nil, fmt.Errorf("%s: no PEM private key found", path)
}

// keyMatches reports whether key is the private half of cert's public key.
func keyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}
