package crypto

import (
	"testing"

	"github.com/hike-vpn/hike/internal/wire"
)

// BenchmarkNewIKEKeys measures SKEYSEED and the seven IKE SA keys for
// AES-GCM-256 with PRF-HMAC-SHA2-256, 32-octet nonces and a Curve25519
// secret.
func BenchmarkNewIKEKeys(b *testing.B) {
	prf := mustPRF(b, wire.PRF_HMAC_SHA2_256)
	encr, err := LookupEncr(wire.ENCR_AES_GCM_16, 256)
	if err != nil {
		b.Fatal(err)
	}
	gir, ni, nr := make([]byte, 32), make([]byte, 32), make([]byte, 32)
	b.ReportAllocs()
	for b.Loop() {
		k, err := NewIKEKeys(prf, encr, nil, gir, ni, nr, 1, 2)
		if err != nil {
			b.Fatal(err)
		}
		k.Zero()
	}
}

// BenchmarkDeriveChildKeys measures the KEYMAT of one AES-GCM-256 Child SA
// pair without PFS.
func BenchmarkDeriveChildKeys(b *testing.B) {
	prf := mustPRF(b, wire.PRF_HMAC_SHA2_256)
	skd, ni, nr := make([]byte, 32), make([]byte, 32), make([]byte, 32)
	b.ReportAllocs()
	for b.Loop() {
		k, err := DeriveChildKeys(prf, skd, nil, ni, nr, 36, 0)
		if err != nil {
			b.Fatal(err)
		}
		k.Zero()
	}
}
