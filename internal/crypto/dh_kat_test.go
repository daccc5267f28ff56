package crypto

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"flag"
	"math/big"
	"strings"
	"testing"

	"github.com/hike-vpn/hike/internal/wire"
)

// rfc5903 are the examples of RFC 5903 §8.1-8.3: private keys i and r,
// public values g^i and g^r as x | y, the complete KEi and KEr payloads,
// and the shared secret girx.
var rfc5903 = []struct {
	group                     uint16
	i, gi, kei, r, gr, ker, z string
}{
	{ // §8.1, 256-bit random ECP group
		group: wire.DH_ECP_256,
		i:     "C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433",
		gi: "DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180" +
			"5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3",
		kei: "00000048 00130000 DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF" +
			"945D0C37 72581180 5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58" +
			"389E0577 B8990BB3",
		r: "C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53",
		gr: "D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63" +
			"56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB",
		ker: "00000048 00130000 D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C" +
			"736FC755 4494BF63 56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83" +
			"53E74F33 039872AB",
		z: "D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE",
	},
	{ // §8.2, 384-bit random ECP group
		group: wire.DH_ECP_384,
		i: "099F3C70 34D4A2C6 99884D73 A375A67F 7624EF7C 6B3C0F16 0647B674 14DCE655" +
			"E35B5380 41E649EE 3FAEF896 783AB194",
		gi: "667842D7 D180AC2C DE6F74F3 7551F557 55C7645C 20EF73E3 1634FE72 B4C55EE6" +
			"DE3AC808 ACB4BDB4 C88732AE E95F41AA" +
			"9482ED1F C0EEB9CA FC498462 5CCFC23F 65032149 E0E144AD A0241815 35A0F38E" +
			"EB9FCFF3 C2C947DA E69B4C63 4573A81C",
		kei: "00000068 00140000 667842D7 D180AC2C DE6F74F3 7551F557 55C7645C 20EF73E3" +
			"1634FE72 B4C55EE6 DE3AC808 ACB4BDB4 C88732AE E95F41AA 9482ED1F C0EEB9CA" +
			"FC498462 5CCFC23F 65032149 E0E144AD A0241815 35A0F38E EB9FCFF3 C2C947DA" +
			"E69B4C63 4573A81C",
		r: "41CB0779 B4BDB85D 47846725 FBEC3C94 30FAB46C C8DC5060 855CC9BD A0AA2942" +
			"E0308312 916B8ED2 960E4BD5 5A7448FC",
		gr: "E558DBEF 53EECDE3 D3FCCFC1 AEA08A89 A987475D 12FD950D 83CFA417 32BC509D" +
			"0D1AC43A 0336DEF9 6FDA41D0 774A3571" +
			"DCFBEC7A ACF31964 72169E83 8430367F 66EEBE3C 6E70C416 DD5F0C68 759DD1FF" +
			"F83FA401 42209DFF 5EAAD96D B9E6386C",
		ker: "00000068 00140000 E558DBEF 53EECDE3 D3FCCFC1 AEA08A89 A987475D 12FD950D" +
			"83CFA417 32BC509D 0D1AC43A 0336DEF9 6FDA41D0 774A3571 DCFBEC7A ACF31964" +
			"72169E83 8430367F 66EEBE3C 6E70C416 DD5F0C68 759DD1FF F83FA401 42209DFF" +
			"5EAAD96D B9E6386C",
		z: "11187331 C279962D 93D60424 3FD592CB 9D0A926F 422E4718 7521287E 7156C5C4" +
			"D6031355 69B9E9D0 9CF5D4A2 70F59746",
	},
	{ // §8.3, 521-bit random ECP group: components are 528 bits
		group: wire.DH_ECP_521,
		i: "0037ADE9 319A89F4 DABDB3EF 411AACCC A5123C61 ACAB57B5 393DCE47 608172A0" +
			"95AA85A3 0FE1C295 2C6771D9 37BA9777 F5957B26 39BAB072 462F68C2 7A57382D" +
			"4A52",
		gi: "0015417E 84DBF28C 0AD3C278 713349DC 7DF153C8 97A1891B D98BAB43 57C9ECBE" +
			"E1E3BF42 E00B8E38 0AEAE57C 2D107564 94188594 2AF5A7F4 601723C4 195D176C" +
			"ED3E" +
			"017CAE20 B6641D2E EB695786 D8C94614 6239D099 E18E1D5A 514C739D 7CB4A10A" +
			"D8A78801 5AC405D7 799DC75E 7B7D5B6C F2261A6A 7F150743 8BF01BEB 6CA3926F" +
			"9582",
		kei: "0000008C 00150000 0015417E 84DBF28C 0AD3C278 713349DC 7DF153C8 97A1891B" +
			"D98BAB43 57C9ECBE E1E3BF42 E00B8E38 0AEAE57C 2D107564 94188594 2AF5A7F4" +
			"601723C4 195D176C ED3E017C AE20B664 1D2EEB69 5786D8C9 46146239 D099E18E" +
			"1D5A514C 739D7CB4 A10AD8A7 88015AC4 05D7799D C75E7B7D 5B6CF226 1A6A7F15" +
			"07438BF0 1BEB6CA3 926F9582",
		r: "0145BA99 A847AF43 793FDD0E 872E7CDF A16BE30F DC780F97 BCCC3F07 8380201E" +
			"9C677D60 0B343757 A3BDBF2A 3163E4C2 F869CCA7 458AA4A4 EFFC311F 5CB15168" +
			"5EB9",
		gr: "00D0B397 5AC4B799 F5BEA16D 5E13E9AF 971D5E9B 984C9F39 728B5E57 39735A21" +
			"9B97C356 436ADC6E 95BB0352 F6BE64A6 C2912D4E F2D0433C ED2B6171 640012D9" +
			"460F" +
			"015C6822 6383956E 3BD066E7 97B623C2 7CE0EAC2 F551A10C 2C724D98 52077B87" +
			"220B6536 C5C408A1 D2AEBB8E 86D678AE 49CB5709 1F473229 6579AB44 FCD17F0F" +
			"C56A",
		ker: "0000008c 00150000 00D0B397 5AC4B799 F5BEA16D 5E13E9AF 971D5E9B 984C9F39" +
			"728B5E57 39735A21 9B97C356 436ADC6E 95BB0352 F6BE64A6 C2912D4E F2D0433C" +
			"ED2B6171 640012D9 460F015C 68226383 956E3BD0 66E797B6 23C27CE0 EAC2F551" +
			"A10C2C72 4D985207 7B87220B 6536C5C4 08A1D2AE BB8E86D6 78AE49CB 57091F47" +
			"32296579 AB44FCD1 7F0FC56A",
		z: "01144C7D 79AE6956 BC8EDB8E 7C787C45 21CB086F A64407F9 7894E5E6 B2D79B04" +
			"D1427E73 CA4BAA24 0A347868 59810C06 B3C715A3 A8CC3151 F2BEE417 996D19F3" +
			"DDEA",
	},
}

// kePayload encodes a last-in-chain KE payload (RFC 7296 §3.4): generic
// header, DH Group Num, RESERVED, Key Exchange Data.
func kePayload(group uint16, data []byte) []byte {
	b := wire.AppendPayloadHeader(nil, wire.PayloadNone, false, 8+len(data))
	b = binary.BigEndian.AppendUint16(b, group)
	b = append(b, 0, 0)
	return append(b, data...)
}

// fixedKeyPair builds a key pair of g from a given private key, which
// Generate never does.
func fixedKeyPair(t *testing.T, g Group, priv []byte) KeyPair {
	t.Helper()
	eg := g.(*ecdhGroup)
	k, err := eg.curve.NewPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return eg.keyPair(k)
}

func TestRFC5903(t *testing.T) {
	for _, v := range rfc5903 {
		g := mustGroup(t, v.group)
		ki := fixedKeyPair(t, g, unhex(t, v.i))
		kr := fixedKeyPair(t, g, unhex(t, v.r))
		if want := unhex(t, v.gi); !bytes.Equal(ki.Public(), want) {
			t.Errorf("group %d: g^i = %X, want %X", v.group, ki.Public(), want)
		}
		if want := unhex(t, v.gr); !bytes.Equal(kr.Public(), want) {
			t.Errorf("group %d: g^r = %X, want %X", v.group, kr.Public(), want)
		}
		if got, want := kePayload(g.ID(), ki.Public()), unhex(t, v.kei); !bytes.Equal(got, want) {
			t.Errorf("group %d: KEi = %X, want %X", v.group, got, want)
		}
		if got, want := kePayload(g.ID(), kr.Public()), unhex(t, v.ker); !bytes.Equal(got, want) {
			t.Errorf("group %d: KEr = %X, want %X", v.group, got, want)
		}
		zi, err := ki.SharedSecret(unhex(t, v.gr))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := kr.SharedSecret(unhex(t, v.gi))
		if err != nil {
			t.Fatal(err)
		}
		want := unhex(t, v.z)
		if !bytes.Equal(zi, want) || !bytes.Equal(zr, want) {
			t.Errorf("group %d: girx = %X / %X, want %X", v.group, zi, zr, want)
		}
	}
}

// x25519Func computes the RFC 7748 X25519(k, u) through hike's group 31.
func x25519Func(t *testing.T, k, u []byte) []byte {
	t.Helper()
	z, err := fixedKeyPair(t, x25519, k).SharedSecret(u)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func TestRFC7748X25519(t *testing.T) {
	// §5.2, the two single-call vectors.
	for _, v := range []struct{ k, u, out string }{
		{
			"a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
			"e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
			"c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
		},
		{
			"4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
			"e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
			"95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
		},
	} {
		if got, want := x25519Func(t, unhex(t, v.k), unhex(t, v.u)), unhex(t, v.out); !bytes.Equal(got, want) {
			t.Errorf("X25519(%s, %s) = %x, want %x", v.k, v.u, got, want)
		}
	}

	// §6.1, the Diffie-Hellman example.
	a := fixedKeyPair(t, x25519, unhex(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
	b := fixedKeyPair(t, x25519, unhex(t, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
	if want := unhex(t, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"); !bytes.Equal(a.Public(), want) {
		t.Errorf("K_A = %x, want %x", a.Public(), want)
	}
	if want := unhex(t, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"); !bytes.Equal(b.Public(), want) {
		t.Errorf("K_B = %x, want %x", b.Public(), want)
	}
	ka, _ := a.SharedSecret(b.Public())
	kb, _ := b.SharedSecret(a.Public())
	if want := unhex(t, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"); !bytes.Equal(ka, want) || !bytes.Equal(kb, want) {
		t.Errorf("K = %x / %x, want %x", ka, kb, want)
	}
}

var x25519Million = flag.Bool("x25519.million", false, "run the 1,000,000-iteration X25519 vector of RFC 7748 §5.2 (minutes)")

// TestRFC7748X25519Iterated runs the iterated vectors of RFC 7748 §5.2:
// k = u = 9, then k, u = X25519(k, u), k.
func TestRFC7748X25519Iterated(t *testing.T) {
	want := map[int]string{
		1:       "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079",
		1000:    "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51",
		1000000: "7c3911e0ab2586fd864497297e575e6f3bc601c0883c30df5f4dd2d24f665424",
	}
	last := 1000
	if *x25519Million {
		last = 1000000
	}
	k := make([]byte, 32)
	k[0] = 9
	u := bytes.Clone(k)
	for i := 1; i <= last; i++ {
		k, u = x25519Func(t, k, u), k
		if w, ok := want[i]; ok && !bytes.Equal(k, unhex(t, w)) {
			t.Fatalf("after %d iterations: %x, want %s", i, k, w)
		}
	}
}

// TestRFC8031Example is the numerical example of RFC 8031 Appendix A: the
// private keys are the random octets of the example; X25519 clamps them
// itself, as the example's "fixed" values show.
func TestRFC8031Example(t *testing.T) {
	ki := fixedKeyPair(t, x25519, unhex(t, "751fb4308655b476b6789b7325f9ea8cddd16a58533ff6d9e60009464a5f9d94"))
	kr := fixedKeyPair(t, x25519, unhex(t, "0a54645253290d60ddadd0e030bacd9e5501efdc220755a1e978f1b839a05688"))
	if want := unhex(t, "48d5ddd4061257ba166fa3f9bbdb74f1a4e81c089384fa77f790709f0dfbc766"); !bytes.Equal(ki.Public(), want) {
		t.Errorf("pub_i = %x, want %x", ki.Public(), want)
	}
	if want := unhex(t, "0be7c1f5aad87d7e448662673298a443478b859745179eaf564c79c0ef6eee25"); !bytes.Equal(kr.Public(), want) {
		t.Errorf("pub_r = %x, want %x", kr.Public(), want)
	}
	zi, err := ki.SharedSecret(kr.Public())
	if err != nil {
		t.Fatal(err)
	}
	zr, err := kr.SharedSecret(ki.Public())
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, "c74950607a12327f3204d94b6825bfb068b7f8319a9e3708ed3d43ce8130c950")
	if !bytes.Equal(zi, want) || !bytes.Equal(zr, want) {
		t.Errorf("SHARED_SECRET = %x / %x, want %x", zi, zr, want)
	}
	// The clamped and unclamped forms are the same private key.
	fixed := fixedKeyPair(t, x25519, unhex(t, "701fb4308655b476b6789b7325f9ea8cddd16a58533ff6d9e60009464a5f9d54"))
	if !bytes.Equal(fixed.Public(), ki.Public()) {
		t.Error("fixed_i gives another public key than random_i")
	}
}

// TestX25519LowOrder checks that a peer value of small order, which makes
// the X25519 output all zeros, is rejected (RFC 7748 §6.1 and §7 allow the
// check; hike always makes it). The inputs are 0, 1 and e0eb7a7c..., a point
// of order 8 (D. J. Bernstein lists the small-order points at
// cr.yp.to/ecdh.html).
func TestX25519LowOrder(t *testing.T) {
	kp := fixedKeyPair(t, x25519, unhex(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
	for _, u := range []string{
		strings.Repeat("00", 32),
		"01" + strings.Repeat("00", 31),
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	} {
		if _, err := kp.SharedSecret(unhex(t, u)); err != ErrKEValue {
			t.Errorf("u = %s: err = %v, want ErrKEValue", u, err)
		}
	}
}

// TestX25519NonCanonical checks RFC 8031 §3.2: the top bit of a peer value
// is masked and a non-canonical value is accepted and reduced, so that
// 2^255 + 9 and p + 9 = 2^255 - 10 both act as the base point 9.
func TestX25519NonCanonical(t *testing.T) {
	kp := fixedKeyPair(t, x25519, unhex(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
	for _, u := range []string{
		"09" + strings.Repeat("00", 30) + "80",
		"f6" + strings.Repeat("ff", 30) + "7f",
	} {
		z, err := kp.SharedSecret(unhex(t, u))
		if err != nil {
			t.Fatalf("u = %s: %v", u, err)
		}
		if !bytes.Equal(z, kp.Public()) {
			t.Errorf("u = %s: X25519(a, u) = %x, want X25519(a, 9) = %x", u, z, kp.Public())
		}
	}
}

// TestRFC8032Ed25519 runs RFC 8032 §7.1 TEST 1-3 and TEST SHA(abc) through crypto/ed25519,
// the primitive behind hike's Ed25519 AUTH (RFC 8420).
func TestRFC8032Ed25519(t *testing.T) {
	for _, v := range []struct{ name, sk, pk, msg, sig string }{
		{"TEST 1",
			"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
			"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
			"",
			"e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155" +
				"5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
		{"TEST 2",
			"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
			"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
			"72",
			"92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da" +
				"085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
		{"TEST 3",
			"c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
			"fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
			"af82",
			"6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac" +
				"18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"},
		{"TEST SHA(abc)", // the message is SHA-512("abc")
			"833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
			"ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
			"ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a" +
				"2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
			"dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589" +
				"09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"},
	} {
		priv := ed25519.NewKeyFromSeed(unhex(t, v.sk))
		pub := priv.Public().(ed25519.PublicKey)
		if want := unhex(t, v.pk); !bytes.Equal(pub, want) {
			t.Errorf("%s: public key %x, want %x", v.name, pub, want)
		}
		msg := unhex(t, v.msg)
		sig := ed25519.Sign(priv, msg)
		if want := unhex(t, v.sig); !bytes.Equal(sig, want) {
			t.Errorf("%s: signature %x, want %x", v.name, sig, want)
		}
		if !ed25519.Verify(pub, msg, sig) {
			t.Errorf("%s: signature does not verify", v.name)
		}
		sig[0] ^= 1
		if ed25519.Verify(pub, msg, sig) {
			t.Errorf("%s: altered signature verifies", v.name)
		}
	}
}

// TestMODPPrimes rebuilds the RFC 3526 primes from their definition,
// p = 2^N - 2^(N-64) - 1 + 2^64 * ([2^(N-130) pi] + k), with pi computed
// here, and checks that they are safe primes, which RFC 6989 §2.1 relies on
// for the 1 < y < p-1 check.
func TestMODPPrimes(t *testing.T) {
	for _, v := range []struct {
		g    *modpGroup
		bits uint
		k    int64
	}{
		{modp2048, 2048, 124476},
		{modp3072, 3072, 1690314},
		{modp4096, 4096, 240904},
	} {
		n := v.bits
		p := new(big.Int).Lsh(big.NewInt(1), n)
		p.Sub(p, new(big.Int).Lsh(big.NewInt(1), n-64))
		p.Sub(p, big.NewInt(1))
		f := piFloor(n - 130)
		f.Add(f, big.NewInt(v.k))
		p.Add(p, f.Lsh(f, 64))
		if p.Cmp(v.g.p) != 0 {
			t.Errorf("group %d: the typed prime differs from the RFC 3526 formula", v.g.id)
		}
		if v.g.len != int(n/8) || v.g.PublicLen() != int(n/8) {
			t.Errorf("group %d: length %d", v.g.id, v.g.len)
		}
		if testing.Short() {
			continue
		}
		q := new(big.Int).Rsh(v.g.p, 1)
		if !v.g.p.ProbablyPrime(0) || !q.ProbablyPrime(0) {
			t.Errorf("group %d: p is not a safe prime", v.g.id)
		}
	}
}

// piFloor returns floor(2^e * pi) from Machin's formula
// pi = 16 atan(1/5) - 4 atan(1/239), computed with 64 guard bits.
func piFloor(e uint) *big.Int {
	const guard = 64
	one := new(big.Int).Lsh(big.NewInt(1), e+guard)
	atanInv := func(x int64) *big.Int {
		sum := new(big.Int)
		term := new(big.Int).Quo(one, big.NewInt(x))
		x2 := big.NewInt(x * x)
		t := new(big.Int)
		for k := int64(0); term.Sign() != 0; k++ {
			t.Quo(term, big.NewInt(2*k+1))
			if k%2 == 0 {
				sum.Add(sum, t)
			} else {
				sum.Sub(sum, t)
			}
			term.Quo(term, x2)
		}
		return sum
	}
	pi := new(big.Int).Mul(atanInv(5), big.NewInt(16))
	pi.Sub(pi, new(big.Int).Mul(atanInv(239), big.NewInt(4)))
	return pi.Rsh(pi, guard)
}

// TestMODPKnownExponents checks the MODP arithmetic and padding with
// exponents small enough to know the answer: g^10 = 1024 and, for the
// peer value 3, 3^5 = 243, both left-padded to the modulus length.
func TestMODPKnownExponents(t *testing.T) {
	for _, g := range []*modpGroup{modp2048, modp3072, modp4096} {
		k := g.keyPair(big.NewInt(10))
		want := make([]byte, g.len)
		binary.BigEndian.PutUint16(want[g.len-2:], 1024)
		if !bytes.Equal(k.Public(), want) {
			t.Errorf("group %d: 2^10 = %x", g.id, k.Public()[g.len-4:])
		}
		k5 := g.keyPair(big.NewInt(5))
		peer := make([]byte, g.len)
		peer[g.len-1] = 3
		z, err := k5.SharedSecret(peer)
		if err != nil {
			t.Fatal(err)
		}
		want = make([]byte, g.len)
		want[g.len-1] = 243
		if !bytes.Equal(z, want) {
			t.Errorf("group %d: 3^5 = %x", g.id, z[g.len-4:])
		}
		// g^a^b == g^b^a with exponents of full size.
		a := g.keyPair(new(big.Int).Rsh(g.p, 3))
		b := g.keyPair(new(big.Int).Rsh(g.p, 5))
		za, _ := a.SharedSecret(b.Public())
		zb, _ := b.SharedSecret(a.Public())
		if !bytes.Equal(za, zb) || len(za) != g.len {
			t.Errorf("group %d: (g^a)^b != (g^b)^a", g.id)
		}
	}
}
