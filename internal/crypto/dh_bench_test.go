package crypto

import (
	"crypto/rand"
	"testing"

	"github.com/hike-vpn/hike/internal/wire"
)

// BenchmarkKeyExchange measures one side of an IKE_SA_INIT exchange:
// Generate plus SharedSecret against a fixed peer value.
func BenchmarkKeyExchange(b *testing.B) {
	for _, c := range []struct {
		name string
		id   uint16
	}{
		{"X25519", wire.DH_CURVE25519},
		{"P256", wire.DH_ECP_256},
		{"P384", wire.DH_ECP_384},
		{"MODP2048", wire.DH_MODP_2048},
		{"MODP3072", wire.DH_MODP_3072},
	} {
		b.Run(c.name, func(b *testing.B) {
			g := mustGroup(b, c.id)
			peer, err := g.Generate(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				k, err := g.Generate(rand.Reader)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := k.SharedSecret(peer.Public()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
