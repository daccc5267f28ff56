package crypto

import (
	"crypto/ecdh"
	cryptorand "crypto/rand"
	"errors"
	"io"
	"math/big"

	"github.com/hike-vpn/hike/internal/wire"
)

// Errors for a peer's Key Exchange Data: ErrKELength for a length other
// than the group's (RFC 7296 §3.4, RFC 5903 §7, RFC 8031 §3.1), ErrKEValue
// for a value of the right length that fails the recipient tests of
// RFC 6989 §2. Either means a broken or hostile peer, and RFC 6989 §2.5 says
// what follows: in IKE_SA_INIT drop the message (or answer a request with
// INVALID_SYNTAX); in CREATE_CHILD_SA answer a request with INVALID_SYNTAX
// and delete the IKE SA. INVALID_KE_PAYLOAD is for a group mismatch, which
// the IKE layer detects before calling SharedSecret.
var (
	ErrKELength = errors.New("crypto: key exchange data has the wrong length for its group")
	ErrKEValue  = errors.New("crypto: key exchange data is not a valid group element")
)

// Group is a Diffie-Hellman group (IKEv2 transform type 4). Groups are
// immutable and shared.
//
// Costs differ by more than an order of magnitude, which is why the daemon
// runs Generate and SharedSecret in its handshake worker pool rather than on
// the packet path. One side of an exchange (Generate plus SharedSecret, see
// BenchmarkKeyExchange) took on a 2-core development VM about 0.1 ms for
// X25519 and P-256, 1 ms for P-384, 1.4 ms for MODP-2048 and 4 ms for
// MODP-3072 (4096 is slower again). MODP is offered for interoperability
// only.
type Group interface {
	// ID is the IANA Transform ID, also carried in the KE payload.
	ID() uint16
	// PublicLen is the length of the Key Exchange Data in a KE payload.
	PublicLen() int
	// Generate creates an ephemeral key pair. Like crypto/ecdh since Go
	// 1.26, the ECP and Curve25519 groups ignore rand and always use a
	// secure source; MODP reads its exponent from rand, or from
	// crypto/rand when rand is nil.
	Generate(rand io.Reader) (KeyPair, error)
}

// KeyPair is one side's ephemeral Diffie-Hellman state.
type KeyPair interface {
	// Public returns the Key Exchange Data to send. The caller must not
	// modify it.
	Public() []byte
	// SharedSecret validates the peer's Key Exchange Data and returns g^ir
	// in the form RFC 7296 §2.14 feeds into SKEYSEED: zero-padded to the
	// modulus length for MODP, the x-coordinate for ECP (RFC 5903 §7), the
	// X25519 output for Curve25519 (RFC 8031 §2).
	//
	// A KeyPair is for one exchange. MODP exponentiation in math/big is not
	// constant-time; RFC 6989 §3 explains why that only matters when
	// private values are reused, which hike never does.
	SharedSecret(peerPublic []byte) ([]byte, error)
}

// LookupGroup returns the Diffie-Hellman group with the given Transform ID.
func LookupGroup(id uint16) (Group, error) {
	switch id {
	case wire.DH_MODP_2048:
		return modp2048, nil
	case wire.DH_MODP_3072:
		return modp3072, nil
	case wire.DH_MODP_4096:
		return modp4096, nil
	case wire.DH_ECP_256:
		return ecp256, nil
	case wire.DH_ECP_384:
		return ecp384, nil
	case wire.DH_ECP_521:
		return ecp521, nil
	case wire.DH_CURVE25519:
		return x25519, nil
	}
	return nil, ErrUnsupported
}

// modpGroup is a MODP group of RFC 3526 with generator 2.
type modpGroup struct {
	id  uint16
	p   *big.Int
	pm1 *big.Int // p-1, the upper exclusive bound of a valid public value
	len int      // octets in the modulus
	// expBits is the private exponent size, rounded up to whole octets.
	// RFC 3526 §1 asks for twice the group's strength in bits; its §8 table
	// gives 320, 420 and 480 bits for groups 14-16 (estimate 2, the larger;
	// NIST SP 800-56A Rev. 3 asks for at least 224, 256 and 304). With safe
	// primes a short exponent loses nothing against the known attacks, and
	// it saves most of each exponentiation.
	expBits int
}

var two = big.NewInt(2)

func newMODP(id uint16, hexPrime string, expBits int) *modpGroup {
	p, ok := new(big.Int).SetString(hexPrime, 16)
	if !ok {
		panic("crypto: bad MODP prime literal") // unreachable: the literals are constants
	}
	return &modpGroup{
		id:      id,
		p:       p,
		pm1:     new(big.Int).Sub(p, big.NewInt(1)),
		len:     (p.BitLen() + 7) / 8,
		expBits: expBits,
	}
}

func (g *modpGroup) ID() uint16     { return g.id }
func (g *modpGroup) PublicLen() int { return g.len }

func (g *modpGroup) Generate(rand io.Reader) (KeyPair, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	buf := make([]byte, (g.expBits+7)/8)
	defer clear(buf)
	x := new(big.Int)
	for x.Cmp(two) < 0 { // 0 and 1 give a public value of 1 or 2: never use them
		if _, err := io.ReadFull(rand, buf); err != nil {
			return nil, err
		}
		x.SetBytes(buf)
	}
	return g.keyPair(x), nil
}

func (g *modpGroup) keyPair(x *big.Int) *modpKeyPair {
	y := new(big.Int).Exp(two, x, g.p)
	return &modpKeyPair{g: g, x: x, pub: y.FillBytes(make([]byte, g.len))}
}

type modpKeyPair struct {
	g   *modpGroup
	x   *big.Int
	pub []byte
}

func (k *modpKeyPair) Public() []byte { return k.pub }

func (k *modpKeyPair) SharedSecret(peer []byte) ([]byte, error) {
	if len(peer) != k.g.len {
		return nil, ErrKELength
	}
	// RFC 6989 §2.1: for a safe prime, 1 < y < p-1 is the whole check; it
	// excludes the elements of order 1 and 2, and every other element has
	// order q or 2q.
	y := new(big.Int).SetBytes(peer)
	if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(k.g.pm1) >= 0 {
		return nil, ErrKEValue
	}
	z := y.Exp(y, k.x, k.g.p)
	return z.FillBytes(make([]byte, k.g.len)), nil
}

// ecdhGroup is an ECP group of RFC 5903 or Curve25519 of RFC 8031, both on
// crypto/ecdh.
type ecdhGroup struct {
	id    uint16
	curve ecdh.Curve
	// pubLen is the length on the wire. RFC 5903 §7 sends x | y without the
	// SEC1 0x04 prefix that crypto/ecdh uses; X25519 sends u as is.
	pubLen int
	nist   bool
}

var (
	ecp256 = &ecdhGroup{id: wire.DH_ECP_256, curve: ecdh.P256(), pubLen: 64, nist: true}
	ecp384 = &ecdhGroup{id: wire.DH_ECP_384, curve: ecdh.P384(), pubLen: 96, nist: true}
	ecp521 = &ecdhGroup{id: wire.DH_ECP_521, curve: ecdh.P521(), pubLen: 132, nist: true}
	x25519 = &ecdhGroup{id: wire.DH_CURVE25519, curve: ecdh.X25519(), pubLen: 32}
)

func (g *ecdhGroup) ID() uint16     { return g.id }
func (g *ecdhGroup) PublicLen() int { return g.pubLen }

func (g *ecdhGroup) Generate(rand io.Reader) (KeyPair, error) {
	priv, err := g.curve.GenerateKey(rand)
	if err != nil {
		return nil, err
	}
	return g.keyPair(priv), nil
}

func (g *ecdhGroup) keyPair(priv *ecdh.PrivateKey) *ecdhKeyPair {
	pub := priv.PublicKey().Bytes()
	if g.nist {
		pub = pub[1:]
	}
	return &ecdhKeyPair{g: g, priv: priv, pub: pub}
}

type ecdhKeyPair struct {
	g    *ecdhGroup
	priv *ecdh.PrivateKey
	pub  []byte
}

func (k *ecdhKeyPair) Public() []byte { return k.pub }

func (k *ecdhKeyPair) SharedSecret(peer []byte) ([]byte, error) {
	if len(peer) != k.g.pubLen {
		return nil, ErrKELength
	}
	enc := peer
	if k.g.nist {
		enc = make([]byte, 1+len(peer))
		enc[0] = 4 // SEC1 uncompressed point
		copy(enc[1:], peer)
	}
	// NewPublicKey checks that a NIST point is on the curve (RFC 6989
	// §2.3). For X25519 it accepts any 32 octets, as RFC 8031 §3.2 asks
	// (the top bit is masked, non-canonical values are reduced), and ECDH
	// refuses an all-zero result, the mark of a small-order peer value,
	// which RFC 7748 §6.1 allows an implementation to check.
	pub, err := k.g.curve.NewPublicKey(enc)
	if err != nil {
		return nil, ErrKEValue
	}
	z, err := k.priv.ECDH(pub)
	if err != nil {
		return nil, ErrKEValue
	}
	return z, nil
}
