package crypto

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"math/big"
	"testing"

	"github.com/hike-vpn/hike/internal/wire"
)

var allGroups = []uint16{
	wire.DH_MODP_2048, wire.DH_MODP_3072, wire.DH_MODP_4096,
	wire.DH_ECP_256, wire.DH_ECP_384, wire.DH_ECP_521, wire.DH_CURVE25519,
}

func mustGroup(t testing.TB, id uint16) Group {
	t.Helper()
	g, err := LookupGroup(id)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestGroupAgreement checks that both sides reach the same secret, that the
// wire sizes are those of RFC 7296 §3.4 (modulus length), RFC 5903 §7
// (2 * field size) and RFC 8031 §2 (32), and that secrets are as long as the
// modulus or field even when they have leading zeros.
func TestGroupAgreement(t *testing.T) {
	want := map[uint16][2]int{ // public, shared
		wire.DH_MODP_2048:  {256, 256},
		wire.DH_MODP_3072:  {384, 384},
		wire.DH_MODP_4096:  {512, 512},
		wire.DH_ECP_256:    {64, 32},
		wire.DH_ECP_384:    {96, 48},
		wire.DH_ECP_521:    {132, 66},
		wire.DH_CURVE25519: {32, 32},
	}
	for _, id := range allGroups {
		g := mustGroup(t, id)
		if g.ID() != id {
			t.Fatalf("group %d reports ID %d", id, g.ID())
		}
		if g.PublicLen() != want[id][0] {
			t.Errorf("group %d: PublicLen %d, want %d", id, g.PublicLen(), want[id][0])
		}
		a, err := g.Generate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		b, err := g.Generate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Public()) != g.PublicLen() {
			t.Fatalf("group %d: public value of %d octets", id, len(a.Public()))
		}
		za, err := a.SharedSecret(b.Public())
		if err != nil {
			t.Fatalf("group %d: %v", id, err)
		}
		zb, err := b.SharedSecret(a.Public())
		if err != nil {
			t.Fatalf("group %d: %v", id, err)
		}
		if !bytes.Equal(za, zb) {
			t.Fatalf("group %d: secrets differ", id)
		}
		if len(za) != want[id][1] {
			t.Errorf("group %d: secret of %d octets, want %d", id, len(za), want[id][1])
		}
		if bytes.Equal(a.Public(), b.Public()) {
			t.Fatalf("group %d: two key pairs with one public value", id)
		}
	}
}

func TestGenerateNilRand(t *testing.T) {
	for _, id := range allGroups {
		k, err := mustGroup(t, id).Generate(nil)
		if err != nil {
			t.Fatalf("group %d: %v", id, err)
		}
		if len(k.Public()) != mustGroup(t, id).PublicLen() {
			t.Fatalf("group %d: public value of %d octets", id, len(k.Public()))
		}
	}
}

// TestMODPExponentFromRand checks that the MODP exponent comes from rand:
// the same bytes give the same public value, a failing reader an error, and
// a reader of zeros (an exponent below 2) is read again.
func TestMODPExponentFromRand(t *testing.T) {
	g := mustGroup(t, wire.DH_MODP_2048)
	seed := bytes.Repeat([]byte{0x5a}, 64)
	a, err := g.Generate(bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	b, err := g.Generate(bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Public(), b.Public()) {
		t.Error("same exponent bytes, different public values")
	}
	if _, err := g.Generate(bytes.NewReader(seed[:10])); err == nil {
		t.Error("short reader accepted")
	}
	zerosThenSeed := io.MultiReader(bytes.NewReader(make([]byte, 40)), bytes.NewReader(seed))
	c, err := g.Generate(zerosThenSeed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.Public(), a.Public()) {
		t.Error("an all-zero exponent was not replaced by the next read")
	}
}

func TestLookupGroupUnsupported(t *testing.T) {
	for _, id := range []uint16{wire.DH_NONE, 1, 2, 5, 17, 18, wire.DH_CURVE448, 0xffff} {
		if _, err := LookupGroup(id); !errors.Is(err, ErrUnsupported) {
			t.Errorf("group %d: err = %v, want ErrUnsupported", id, err)
		}
	}
}

func TestPeerValueRejected(t *testing.T) {
	for _, id := range allGroups {
		g := mustGroup(t, id)
		k, err := g.Generate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		n := g.PublicLen()
		for _, l := range []int{0, 1, n - 1, n + 1, 2 * n} {
			if _, err := k.SharedSecret(make([]byte, l)); !errors.Is(err, ErrKELength) {
				t.Errorf("group %d, %d octets: err = %v, want ErrKELength", id, l, err)
			}
		}
		// All zeros is invalid everywhere: 0 for MODP, not on the curve
		// for ECP (and the point at infinity has no affine encoding), and
		// a low-order point giving an all-zero X25519 output.
		if _, err := k.SharedSecret(make([]byte, n)); !errors.Is(err, ErrKEValue) {
			t.Errorf("group %d, zeros: err = %v, want ErrKEValue", id, err)
		}
	}
}

// TestMODPBounds checks RFC 6989 §2.1: 1 < y < p-1.
func TestMODPBounds(t *testing.T) {
	for _, id := range []uint16{wire.DH_MODP_2048, wire.DH_MODP_3072, wire.DH_MODP_4096} {
		g := mustGroup(t, id).(*modpGroup)
		k, err := g.Generate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		enc := func(b []byte) []byte { return append(make([]byte, g.len-len(b)), b...) }
		pm1 := g.pm1.Bytes()
		p := g.p.Bytes()
		pm2 := new(big.Int).Sub(g.pm1, big.NewInt(1)).Bytes()
		for name, y := range map[string][]byte{"1": enc([]byte{1}), "p-1": pm1, "p": p, "2^n-1": bytes.Repeat([]byte{0xff}, g.len)} {
			if _, err := k.SharedSecret(y); !errors.Is(err, ErrKEValue) {
				t.Errorf("group %d, y = %s: err = %v, want ErrKEValue", id, name, err)
			}
		}
		for name, y := range map[string][]byte{"2": enc([]byte{2}), "p-2": pm2} {
			if _, err := k.SharedSecret(y); err != nil {
				t.Errorf("group %d, y = %s: %v", id, name, err)
			}
		}
	}
}

func TestECPNotOnCurve(t *testing.T) {
	for _, id := range []uint16{wire.DH_ECP_256, wire.DH_ECP_384, wire.DH_ECP_521} {
		g := mustGroup(t, id)
		a, _ := g.Generate(rand.Reader)
		b, _ := g.Generate(rand.Reader)
		bad := bytes.Clone(b.Public())
		bad[len(bad)-1] ^= 1 // y no longer matches x
		if _, err := a.SharedSecret(bad); !errors.Is(err, ErrKEValue) {
			t.Errorf("group %d: off-curve point: err = %v, want ErrKEValue", id, err)
		}
	}
}

// FuzzSharedSecret feeds arbitrary Key Exchange Data to every group (chosen
// by index into allGroups): it must never panic, and it must either fail
// with one of the two KE errors or give a secret no longer than the group's
// public value.
func FuzzSharedSecret(f *testing.F) {
	groups := make([]Group, len(allGroups))
	pairs := make([]KeyPair, len(allGroups))
	for i, id := range allGroups {
		g := mustGroup(f, id)
		k, err := g.Generate(rand.Reader)
		if err != nil {
			f.Fatal(err)
		}
		groups[i], pairs[i] = g, k
		peer, err := g.Generate(rand.Reader)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), peer.Public())
		f.Add(uint8(i), make([]byte, g.PublicLen()))
		f.Add(uint8(i), bytes.Repeat([]byte{0xff}, g.PublicLen()))
		f.Add(uint8(i), []byte{4})
	}
	f.Fuzz(func(t *testing.T, i uint8, peer []byte) {
		n := int(i) % len(groups)
		g := groups[n]
		z, err := pairs[n].SharedSecret(peer)
		switch {
		case err == nil:
			if len(peer) != g.PublicLen() || len(z) == 0 || len(z) > g.PublicLen() {
				t.Fatalf("group %d: %d-octet peer value gave a %d-octet secret", g.ID(), len(peer), len(z))
			}
		case errors.Is(err, ErrKELength):
			if len(peer) == g.PublicLen() {
				t.Fatalf("group %d: right length reported as wrong", g.ID())
			}
		case !errors.Is(err, ErrKEValue):
			t.Fatalf("group %d: unexpected error %v", g.ID(), err)
		}
	})
}
