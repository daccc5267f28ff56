package crypto

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hike-vpn/hike/internal/wire"
)

// rfc4868PRFInputs are the keys and data of RFC 4868 §2.7.1 (borrowed from
// RFC 4231), shared by the PRF test cases.
var rfc4868PRFInputs = [6]struct{ key, data string }{
	{strings.Repeat("0b", 20), "4869205468657265"}, // "Hi There"
	{"4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f"},
	{strings.Repeat("aa", 20), strings.Repeat("dd", 50)},
	{"0102030405060708090a0b0c0d0e0f10111213141516171819", strings.Repeat("cd", 50)},
	{strings.Repeat("aa", 131), "" +
		"54657374205573696e67204c61726765" +
		"72205468616e20426c6f636b2d53697a" +
		"65204b6579202d2048617368204b6579" +
		"204669727374"},
	{strings.Repeat("aa", 131), "" +
		"54686973206973206120746573742075" +
		"73696e672061206c6172676572207468" +
		"616e20626c6f636b2d73697a65206b65" +
		"7920616e642061206c61726765722074" +
		"68616e20626c6f636b2d73697a652064" +
		"6174612e20546865206b6579206e6565" +
		"647320746f2062652068617368656420" +
		"6265666f7265206265696e6720757365" +
		"642062792074686520484d414320616c" +
		"676f726974686d2e"},
}

// RFC 4868 §2.7.1, Test Cases PRF-1 to PRF-6.
var rfc4868PRF = map[uint16][6]string{
	wire.PRF_HMAC_SHA2_256: {
		"b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
		"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
		"773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
		"82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
		"60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
		"9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
	},
	wire.PRF_HMAC_SHA2_384: {
		"afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6",
		"af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
		"88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b2a5ab39dc13814b94e3ab6e101a34f27",
		"3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e6801dd23c4a7d679ccf8a386c674cffb",
		"4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952",
		"6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5a678cc31e799176d3860e6110c46523e",
	},
	wire.PRF_HMAC_SHA2_512: {
		"87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde" +
			"daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
		"164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554" +
			"9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
		"fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39" +
			"bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb",
		"b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db" +
			"a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd",
		"80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352" +
			"6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
		"e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944" +
			"b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58",
	},
}

func TestRFC4868PRF(t *testing.T) {
	for id, outs := range rfc4868PRF {
		prf := mustPRF(t, id)
		for i, in := range rfc4868PRFInputs {
			got := prf.Sum(nil, unhex(t, in.key), unhex(t, in.data))
			if want := unhex(t, outs[i]); !bytes.Equal(got, want) {
				t.Errorf("PRF %d, PRF-%d = %x, want %x", id, i+1, got, want)
			}
			if len(got) != prf.Size {
				t.Errorf("PRF %d: output of %d octets, Size %d", id, len(got), prf.Size)
			}
		}
	}
}

// RFC 4868 §2.7.2, Test Cases AUTH256-1..4, AUTH384-1..4, AUTH512-1..4:
// key, data and the truncated ICV. (The RFC labels AUTH384-1's value
// "HMAC-SHA-384-128" but prints the 192-bit truncation, as for the others.)
var rfc4868Auth = []struct {
	integ          uint16
	key, data, icv string
}{
	{wire.AUTH_HMAC_SHA2_256_128, strings.Repeat("0b", 32), "4869205468657265",
		"198a607eb44bfbc69903a0f1cf2bbdc5"},
	{wire.AUTH_HMAC_SHA2_256_128, strings.Repeat("4a656665", 8), "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
		"167f928588c5cc2eef8e3093caa0e87c"},
	{wire.AUTH_HMAC_SHA2_256_128, strings.Repeat("aa", 32), strings.Repeat("dd", 50),
		"cdcb1220d1ecccea91e53aba3092f962"},
	{wire.AUTH_HMAC_SHA2_256_128, "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20", strings.Repeat("cd", 50),
		"372efcf9b40b35c2115b1346903d2ef4"},

	{wire.AUTH_HMAC_SHA2_384_192, strings.Repeat("0b", 48), "4869205468657265",
		"b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973"},
	{wire.AUTH_HMAC_SHA2_384_192, strings.Repeat("4a656665", 12), "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
		"2c7353974f1842fd66d53c452ca42122b28c0b594cfb184d"},
	{wire.AUTH_HMAC_SHA2_384_192, strings.Repeat("aa", 48), strings.Repeat("dd", 50),
		"809f439be00274321d4a538652164b53554a508184a0c316"},
	{wire.AUTH_HMAC_SHA2_384_192, "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f200a0b0c0d0e0f10111213141516171819", strings.Repeat("cd", 50),
		"5b540085c6e6358096532b2493609ed1cb298f774f87bb5c"},

	{wire.AUTH_HMAC_SHA2_512_256, strings.Repeat("0b", 64), "4869205468657265",
		"637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8"},
	{wire.AUTH_HMAC_SHA2_512_256, strings.Repeat("4a656665", 16), "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
		"cb370917ae8a7ce28cfd1d8f4705d6141c173b2a9362c15df235dfb251b15454"},
	{wire.AUTH_HMAC_SHA2_512_256, strings.Repeat("aa", 64), strings.Repeat("dd", 50),
		"2ee7acd783624ca9398710f3ee05ae41b9f9b0510c87e49e586cc9bf961733d8"},
	// AUTH512-4's key is printed with a stray first line
	// (0a0b...1819) that makes 80 octets under a "(64 bytes)" label; the
	// published ICV is that of the 64 octets 01..40.
	{wire.AUTH_HMAC_SHA2_512_256, "" +
		"0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20" +
		"2122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40", strings.Repeat("cd", 50),
		"5e6688e5a3daec826ca32eaea224eff5e700628947470e13ad01302561bab108"},
}

func TestRFC4868Auth(t *testing.T) {
	for i, v := range rfc4868Auth {
		integ, err := LookupInteg(v.integ)
		if err != nil {
			t.Fatal(err)
		}
		key := unhex(t, v.key)
		if len(key) != integ.KeyLen {
			t.Fatalf("case %d: %d-octet key, integ %d takes %d", i, len(key), v.integ, integ.KeyLen)
		}
		h := integ.New(key)
		h.Write(unhex(t, v.data))
		got := h.Sum(nil)[:integ.ICVLen]
		if want := unhex(t, v.icv); !bytes.Equal(got, want) {
			t.Errorf("case %d (integ %d): ICV %x, want %x", i, v.integ, got, want)
		}
	}
}
