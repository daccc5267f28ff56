package crypto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/hike-vpn/hike/internal/wire"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad test vector %q: %v", s, err)
	}
	return b
}

func mustPRF(t testing.TB, id uint16) *PRF {
	t.Helper()
	p, err := LookupPRF(id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// cavpSHA1 is the HMAC-SHA-1 example of the NIST CAVP SP 800-135 IKEv2 KDF
// test vectors (ikev2.zip, csrc.nist.gov, Cryptographic Algorithm Validation
// Program, 800-135testvectors): Ni and Nr of 64 bits, g^ir of 1024 bits, DKM
// lengths of 1056 bits.
var cavpSHA1 = struct {
	ni, nr, gir, girNew, spii, spir            string
	skeyseed, dkm, dkmChild, dkmChildDH, rekey string
}{
	ni: "3651fef5c9c35e93",
	nr: "c09a8b90a3f04d59",
	gir: "" +
		"d084a30166a50fb7325c3960874a839449ef9741c2f4f947d0201dd8c1269273" +
		"d79509f37e3ca3eb4fa2fe2a28254e289cd3f34dad4eb4df1a07685a4b8a94fa" +
		"61e2491f7598b3ce65547ff133b3f63d1ac4175eaa695033f3cedb026a6873a3" +
		"6455172a8540b8a5d23a0143bed0390ee49b168269d75fffee9fb62be965993c",
	girNew: "" +
		"52f00ab174c25d5b7139ae5ff4e8e9eddee5992d2e36adf8a559ffd90dab1442" +
		"e4fbe429d320c0f33552a17d1557fa41ea70e8fb916c4fa27ed52b5f8ebd8461" +
		"afa78f1159159a64055ac5f6319e29c28eae58cbc6847770f32c3fed1d047504" +
		"84f854790f95e9ec01bc5bc461f24966462e359511329305038e94deb6dd42c2",
	spii:     "8e5c3ae507221684",
	spir:     "b1f201bb155c3acd",
	skeyseed: "cd2e8050137832245f1dbacc6e4f0a92f94d45d6",
	dkm: "" +
		"6f1b12cad3cbe097b35430356d869d54cddb0198ec859174d53ceb92dddedbe2" +
		"436db69f60977c58fa63bbb667f8d36920b109baae8f6c61a9ac49feda018432" +
		"25d080ec5539d5881a25521ffb2a0a91874a9c0a27fcc2d717eb8963a9e3a89c" +
		"7ab264757284c28cf8c3ca40576f4220b052b1fb8e9ad60ba3c80557323331a8" +
		"cbb89f20",
	dkmChild: "" +
		"4727dc0ef94eb326ce131cf282fb652faa638ad0ddae3786a11bcc0309876009" +
		"f8c485de011ad962c5b1ca8a41ff8145445749079c5686e26ffebbc342f06981" +
		"f3da745e11ca0976424d1f8caec623d59dc7186deb20a27b411d1dcb70a36544" +
		"0bf7de905088b0692e8addc094e18d1939bdb67e89798ca6b239e2ccb81c2409" +
		"dac0106c",
	dkmChildDH: "" +
		"b109c21ad4c0797768c1cec9e63554681e48f224bca7f23c20c4ea7041983451" +
		"e9aa1d5408656c8a975ff1b9d9a12c75ffeb64bdecb30174664cccb4e14f1c37" +
		"7b7f6d1525af77c7092aac3e47f917ebae8297fb5539d2008ce830823a09cc19" +
		"7361d4a289c72745f6ce9fefe812be5bf55b3200fbb82e41a4a40877d3fe106d" +
		"b909707b",
	rekey: "3b03bce748c96d5e8306918d2ff89b68f0648da3",
}

func TestCAVPSHA1(t *testing.T) {
	v := cavpSHA1
	prf := mustPRF(t, wire.PRF_HMAC_SHA1)
	ni, nr, gir := unhex(t, v.ni), unhex(t, v.nr), unhex(t, v.gir)
	spii, spir := unhex(t, v.spii), unhex(t, v.spir)

	seed := skeyseed(prf, ni, nr, gir)
	if want := unhex(t, v.skeyseed); !bytes.Equal(seed, want) {
		t.Fatalf("SKEYSEED = %x, want %x", seed, want)
	}

	dkm := make([]byte, len(v.dkm)/2)
	if err := prf.Plus(dkm, seed, ni, nr, spii, spir); err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, v.dkm); !bytes.Equal(dkm, want) {
		t.Fatalf("DKM = %x, want %x", dkm, want)
	}

	// AES-CBC-128 with HMAC-SHA1-96 takes exactly the 1056 bits of the
	// vector's DKM: 3*20 + 2*20 + 2*16 octets.
	encr, _ := LookupEncr(wire.ENCR_AES_CBC, 128)
	integ, _ := LookupInteg(wire.AUTH_HMAC_SHA1_96)
	keys, err := NewIKEKeys(prf, encr, integ, gir, ni, nr, be64(spii), be64(spir))
	if err != nil {
		t.Fatal(err)
	}
	got := bytes.Join([][]byte{keys.D, keys.Ai, keys.Ar, keys.Ei, keys.Er, keys.Pi, keys.Pr}, nil)
	if !bytes.Equal(got, dkm) {
		t.Fatalf("SK_d..SK_pr = %x, want the DKM %x", got, dkm)
	}
	if len(keys.D) != 20 || len(keys.Ai) != 20 || len(keys.Ei) != 16 || len(keys.Pr) != 20 {
		t.Fatalf("key sizes d=%d a=%d e=%d p=%d", len(keys.D), len(keys.Ai), len(keys.Ei), len(keys.Pr))
	}

	child := make([]byte, len(v.dkmChild)/2)
	if err := prf.Plus(child, keys.D, ni, nr); err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, v.dkmChild); !bytes.Equal(child, want) {
		t.Fatalf("DKM(Child SA) = %x, want %x", child, want)
	}
	girNew := unhex(t, v.girNew)
	childDH := make([]byte, len(v.dkmChildDH)/2)
	if err := prf.Plus(childDH, keys.D, girNew, ni, nr); err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, v.dkmChildDH); !bytes.Equal(childDH, want) {
		t.Fatalf("DKM(Child SA D-H) = %x, want %x", childDH, want)
	}

	// DeriveChildKeys splits the same KEYMAT: initiator encr, initiator
	// integ, responder encr, responder integ.
	ck, err := DeriveChildKeys(prf, keys.D, girNew, ni, nr, 32, 32)
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, v.dkmChildDH)
	if !bytes.Equal(ck.InitEncr, want[:32]) || !bytes.Equal(ck.InitInteg, want[32:64]) ||
		!bytes.Equal(ck.RespEncr, want[64:96]) || !bytes.Equal(ck.RespInteg, want[96:128]) {
		t.Fatal("Child SA keys are not the KEYMAT split in RFC 7296 §2.17 order")
	}
	ck, err = DeriveChildKeys(prf, keys.D, nil, ni, nr, 36, 0)
	if err != nil {
		t.Fatal(err)
	}
	want = unhex(t, v.dkmChild)
	if !bytes.Equal(ck.InitEncr, want[:36]) || ck.InitInteg != nil || !bytes.Equal(ck.RespEncr, want[36:72]) || ck.RespInteg != nil {
		t.Fatal("AEAD Child SA keys are not the KEYMAT split")
	}

	rekey := rekeySKEYSEED(prf, keys.D, girNew, ni, nr)
	if want := unhex(t, v.rekey); !bytes.Equal(rekey, want) {
		t.Fatalf("SKEYSEED(Rekey) = %x, want %x", rekey, want)
	}
	rk, err := RekeyIKEKeys(prf, keys.D, prf, encr, integ, girNew, ni, nr, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	rdkm := make([]byte, 132)
	var spis [16]byte
	spis[7], spis[15] = 1, 2
	if err := prf.Plus(rdkm, rekey, ni, nr, spis[:]); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rk.D, rdkm[:20]) || !bytes.Equal(rk.Pr, rdkm[112:]) {
		t.Fatal("rekeyed IKE SA keys do not come from SKEYSEED(Rekey) and the new SPIs")
	}
}

func be64(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// cavpSHA2 are the HMAC-SHA-2 cases of the NIST CAVP SP 800-135 IKEv2 KDF
// test vectors (ikev2.zip), one with the shortest and one with the longest
// nonces per hash; strongSwan carries the same values in its test_vectors
// kdf_prf.c and kdf_prf_plus.c. nonces is Ni | Nr.
var cavpSHA2 = []struct {
	name                             string
	prf                              uint16
	gir, nonces, spis, skeyseed, dkm string
}{
	{
		name: "sha256/1",
		prf:  wire.PRF_HMAC_SHA2_256,
		gir: "" +
			"42968e5d0ccc3cfc5a3e4bc1bba370cea1fae0d54c49ccba34b2bee804beeb2e9e8c57a4e01bd45102cf2433aacc6cfe" +
			"c06792f363e5170e6aa6650274e906648e449d27a8f00b5b44261982c9835c748a751ec5138eaacc5e025661339538a6" +
			"1bf418e454699e19c32db8d9ce5dd86b220f1e89afc5872e68be36cb1a0c8866",
		nonces:   "ed80dc79912c32a935fb6d1a3feac078",
		spis:     "47c1858efc932ea4606fd05609624002",
		skeyseed: "37fde90b81d63692620f67367b62092e3efdc6a03509137d731004767ff35010",
		dkm: "" +
			"63d018a08f7a29daa7d1f92cb63f45fa39bbaf5e5f1a78139613bb891e3e6bf9d0448f7c74e05b4c1a25c0b61e62c875" +
			"e852f287e192d4ae536112db5197216400bd5e123470efc15f53161865fe8b19a1416518a157d651ecd2caddab6a9eae" +
			"6a27a55af088218d5156edaa9789f934d9836ed43edffda553822202ff9f7d4860ca72e0",
	},
	{
		name: "sha256/2",
		prf:  wire.PRF_HMAC_SHA2_256,
		gir: "" +
			"b070208f8947df4f7d1276161f407f7b7f5c4a49ac79f0cc0c7d4e28484c6f8584f0007b9bf0e05fdb5961a17d3aa85c" +
			"6e3f5571296a43ba896cdc88c1a4457fb12cbe56ca4a20c9a7e19adc67453c4ade539e259f825ff94c9a83f839602f86" +
			"51c9276d8e444ecb95a0540ee7ea3220a922345ed99ef7e7ad32b19d4610e9ef",
		nonces: "" +
			"efa72913182278ffbd14e78920c062519abab8c16e5ed70c0841a48cdb98237ee93f735fb2df184358aadc13d83f43fe" +
			"8d8705176c8ca313825a1bcdf77911c598001671ffbf014e37a8c04d49a7839dfea6cdc587688d4588fe43235b71693f" +
			"fd07293386b6bf4c199e336165b260787736f54be95db69116388bc2eca2b3b29484717417bb3c71814ce13b84446dc3" +
			"964c302984f97781f63166240890107c2e751a00436f7c3c9ff12760e49d91563be603fd9641a0a64918a93291ed113d" +
			"b12f9707609d172096eb58f9154474da40c1f5c0903e9ca2f91ba6600775df7166caf8e327859e676232d34046044cee" +
			"43f9019f04685612635b99cbebcb363d565eaf0e547eecb941c994dfd471ed5643c087744f7709cc3e2510f27426c62c" +
			"0ff3acb3c27661d26a6d83c2a25e13a6d465bd047f905500e5ebbe4266430d5667140f77e797712a8c8f63c583f4b464" +
			"9b72899ea34abfdb17617c460c35f2506494494f223e251ac71a5b9b7eea87f4f5e333a3c1bbb4bb09258b6a4b5f8c9f" +
			"b82bf42da9d4a46543c6a9eb9aa30ea9da801915abcc1712d082f292a63fd9af7154a97cc73859a4be3cba359d321800" +
			"4e14df02d09edf0ad5796bb010995293ab5d042c31055380cc9cb2e3617982c45f6bce1fb8a40ef9eac48ae17720dfec" +
			"c71ec857ea33f32eb346ba6036e8f9ccd7bcadc6c1ab92a80c57e78959d8b828",
		spis:     "57e91df9c5ffb8424d5eadac0e570f7c",
		skeyseed: "29bd115568ae0988270fc386d395fe3707a4d06289f352bba4c00a9ad855a08d",
		dkm: "" +
			"d5033d087934c61538b23dff875b3ba920e05c1b42ac7f9793995e76ba3e461d6e83b2fbe0fa681ba285696d53b175e0" +
			"70c4c1cbc74043f7cac558c494acd23aabfc7a685b6274134408cafc1692852aca663cefd7dd0c8a872a36a1414db4b7" +
			"f314ad0e49f2c187162e2876c6053dbef5a2ea8c33dcd3dd91687644377c45f4b5c418e1e10bec22baac313b902bdffc" +
			"fb69c68ef4e71c5acc39a9f07acb1fc3ba8e92c6dca861a64163b0689da4a97f124026360990c9f1ae4e8d0298f077fc" +
			"bb0c203fd2ca821deab0591a221d9d0a798d02f078d8fb6e931ca446a13f11638c6b6afb8225a008f938a6878c5b577e" +
			"03aecfa7314101edd0fda3bdbea4985c",
	},
	{
		name: "sha384/1",
		prf:  wire.PRF_HMAC_SHA2_384,
		gir: "" +
			"4df040b70978629c49437cff41a0d46cbea68c8d75b370ffc11d7b387144ea83bb5903fbb92e473df50a9b19ea43e9c2" +
			"f3da9a849c03864276c6f264ecf02a60d40ba65c06656b633f02a87427e928eb66a2dabd9dc05744717bcaf7ae78c296" +
			"872f5c48d1a8120c2155b70c565ce271998e3e44af263d487ea3ba7f56132d7d",
		nonces:   "d672b0bc852829b93509f3b724706364",
		spis:     "0f9a016d7b22223c85f710daf8b982d8",
		skeyseed: "54436a9ea95d6ff79b967f4b07f6de976a376e8ea26aa9574709afc60243c9c141da4ca0e158e627a75ea87f6feb07ef",
		dkm: "" +
			"10b00a654643b3b985764f86e23ef62431122fcc96de16e338a372bee49391db1f83a7358c080380abbf4af47cdb83b9" +
			"530343168f7dbc9221260e1546c6b383e2235d2705a727f0b41aebf6a1b4c61cb460660152a17ba74c20d5191ba68417" +
			"94945270d829587b7f3294639ea7b77149e1d07230ac16e0cd5ab236fa3212bd569ee70f",
	},
	{
		name: "sha384/2",
		prf:  wire.PRF_HMAC_SHA2_384,
		gir: "" +
			"ae505082ac47ff9aa354b7af2b072cb49cec838d00ee3613881a9977b2159599a02495f0e52d961a516c6bb61ed03a86" +
			"37bb507c5c27bab58df154e8e5014821840cfc50b3a478b45dd168eb180d69cba61a1b4259193a51a7a495c95805382e" +
			"3abf5587688f34b63f71163982de3ddf7f263bb69f65c3ecae6165bf7fdd5317",
		nonces: "" +
			"9e2a62f9362893ddf84716fec2f23f9dcbd9010df6fe9e0eb46d03d914f304d8fe4d3ee2d6a03b40e56a325e822a1736" +
			"1929184ade09eaa445278d3870417a7cf565584f572ad34ff72bc7781a39a48b54b55d6eb0ed68551b222c7afada0bc8" +
			"2236ec31ce6c046b3b2edb2def61f4d2d857b2d1cb3696c023e08c08d6abd04d4f69092b14583735b9e918aee5a3999d" +
			"cbf58fdad6fcd47c95929877030e54b708235f2a2e11e7c58584619aa2fa69315344d3657b55720a25ebe88ea0776972" +
			"c9e22469b7ed5da96b3c7685f7b0569960bd644f130b44a0d551bb0e902ed68ab384fdc2facaf79bbf8d6d3736dfa952" +
			"cd70f4746f1a4aeac2bdbeca97b78fc1777878c12859433552a77d7f942e5b60476991a1e3d0427cd677345a1ce2063a" +
			"2e0ec547a9d821da759f1a91b58817bd0dc4effc126f6f4eb0b911e904ed21dc439d658a773f97e179ad20bc3c63609f" +
			"2874062e835f6ae08d59654f9c8861e527039eeac32b9eed293bd8b1e0e7c67bf1d755246a1b063ff00632a46dd5cf69" +
			"48f0eed9b65c5939dfd21480a63df0cab0a7509c4245a1be7547ccc6f73c724b48b7867012e0ca3e472e0d550649a734" +
			"440feffc8e73682cb60453e7a47e72fe0874eb40acd0d48e4e57197416112bcdc8bb7a58bea745fdd64c16f666c88d9e" +
			"3bd235b137206f6cdba190be65ec033c191f676b428ec1205dc5e945828508d8",
		spis:     "6fd4bc625402aa685f60725efdb42596",
		skeyseed: "ff66e9d092dc01e0b81f939f52f5c07d38d805b98628ce1ac5fe94c098577647339fad68941ffe21e01efb4e7050213b",
		dkm: "" +
			"2810288a45a502211feade9943b4224a3f54cf97f191b621d80a19f3f1b0366d5ed73d195b732a15b599051a13b7c584" +
			"175521e3a97cdb220c8924b0ec234a942e0579675f193926ab332970585553e230e3429c6e8ba71b9374bd4a8df96945" +
			"6840527f2cf635392be9c17ca8474cf01b332b8108b54c48aafc86ac4cfce7058ee114540e5a1b952201ee3d0ac9d3e3" +
			"3f01807584339ac3f43ccdd395c58bb3f4a4cc5c57871ea1d3eaa8d0302bb308d1d203af13147e87ab2b9159ae361ec0" +
			"11d673fe3f162b3989da3488d8ffea2b51e7465faddca67d1d54c8940a8ab62e8abe4145cb25159125950119e3c01a81" +
			"3575f0a959b143bc31f62b4734aa45e2",
	},
	{
		name: "sha512/1",
		prf:  wire.PRF_HMAC_SHA2_512,
		gir: "" +
			"1e3b007d2da913ca60ecc98c25a22db08073d5c35c11b2524b298a922b6abfe6acf7359db66ae5f85d67aacff686419c" +
			"d8666d05ae7977cefad7f54dd8e312a8e8e5e0370f88142fbdd659dd6fde22bdd531f5402881a8de85c1024e595ec93c" +
			"575618af7fd3dbac7982919078d71cc13eff1910a032750e1ff428675de189ee",
		nonces: "df7931db9b429e10b8aa8e4d46042393",
		spis:   "9ba40af9157f47925383c7cd3d1046e6",
		skeyseed: "" +
			"daf9bd6f2f912da553867966af386e67909a8df0ca7e84b83b355cb7d7f1026f17d8ea34b5d57fd0d1ba389528fca1e8" +
			"1d1c8ce511b28a2458241143fee30ccc",
		dkm: "" +
			"919a75deaeccbd393bebc89615f8a215edb7073b2319d86740221eee7a2deb92509044d7e61fcb1bf9676b3881c7ced4" +
			"9e6bba1549da3113601677a2445d91ac13a597335782dd3a9cf496d9e19b932f27dd35e36f8070d232d0a3b3f4c4a0b4" +
			"ba4470778dc090f31f52ab1b6d81e4c7dfb35063ad96c327adcdbde714cc9a6b5ef049b8",
	},
	{
		name: "sha512/2",
		prf:  wire.PRF_HMAC_SHA2_512,
		gir: "" +
			"9cb4bf2446170ac381025266a1a4b86513df60ea7d07b1b2139d78f331ef7eb7be8b15d86cd85e2a6a34a55869f8dcc9" +
			"754f49697331b9b650ce256edb3371a94b7c2a132f2fc99d22303717c36739d17c0e9718d7c052e7ab4d4858adeb9b8b" +
			"4d3303a9e1b6bef29f03035beed071d3bb810d853971a748c56c59e0bafb9b5a",
		nonces: "" +
			"d89684e3cb17f3aabd853a78db3ecd5aacc1ed71c70b88a29756f46fc7197c804ec001544002a8aea360684b18006def" +
			"0dbd8633b1019fbcfa85b94cac2bb8212584be62adab0ee4bb8a36aee25275ef071390480eefa2092eb308aa7337c5ce" +
			"b6069ab690e8962fbfe0986e4f5c18f486861ed3f1dcbee4c9e4a7669d740ca2b0e8ed4031b0a499dc315cede7ef0339" +
			"9cbc33dcd62970349f1220881b55452e0c6c9b52a88b67f597586795b22570733fd4ff2cc2ad931d8330165a9e450e38" +
			"8859ce624f01db17c2502b4e66adf96527363d6f906b2023e8ed74d5af0aa60246b0b92f49c4933ef312f8a25434ee96" +
			"98d6d9204345bd10bb11aa39865616d5ad1b5744706cfd4ea1408e20c8fdcf8551eee8814b7b37330b0526f0bc5ee15d" +
			"4ecda7a1bd25aa97f24584d85d3f5249694b9f43539e69ea35bfe7fd4407bc8e9dca8a9fae4bdc6b7bb38c6d68f899e1" +
			"d32c85bcd617a567678cf85d2217a4e86a755624b64002354c026842bc9542491af1c3d6290970559af11bdc2c83b54c" +
			"74144905c0a358f3153db767a5da2a8627f69627e1d41ede9c907c79b51ff815e4645c3375e0f63f84fcf5d7c3407a1d" +
			"d6839e1906a1e3802ccf5e8230d95cf4b827b41c483425a8a60bfa5189dac438060f2f5cd526662f2906c1dd64f4844e" +
			"942ca84daece6dd7bbf7194d8ce56bc2831085a7d310e4944cfae76260aabf6b",
		spis: "609d88789b8a1abf500186c3d97ed2ab",
		skeyseed: "" +
			"e570e7484634300d7addf5a8527c138b7696dbc3d8be0969b75215318a11ada213538f6293b0eee5b309ad8f5d8d94db" +
			"e5736127e0d2560f281c9c586bf7c86f",
		dkm: "" +
			"987fadd804994567d57f989b6cda66efbffcab28ac3e3bc6107805954eb1ead0cea6fb49aa961cbe98fdad57dd9c4556" +
			"7ce496747862f88bcd9fc57559a07ea927a42082ba87e0f51b3d5b8cbdeaddeda3ae4c73b1a51dd0dce3cc8eb3b1419b" +
			"93f29dc6522b2f5e9375238203eca98ed86bf1e6868ab428d863a5f3b987d6c0f957af08a1631f7cdc008cbbffc24b02" +
			"931a020194e368d6b5702e7f8b960dbc93ca56ed5a68dae0206994edf1476f5fa34efbdaa973d27ba368cedcc666d763" +
			"bd6ad560573851bffb7099af588f34ff2e599b0e87f70a7f4aa48e951d0c5c30ddfc1f98c128631590cde00a7c93158d" +
			"bf4caa537b315931b714d72f4d2a01c9",
	},
}

func TestCAVPSHA2(t *testing.T) {
	for _, v := range cavpSHA2 {
		t.Run(v.name, func(t *testing.T) {
			prf := mustPRF(t, v.prf)
			nonces, spis := unhex(t, v.nonces), unhex(t, v.spis)
			n := len(nonces) / 2
			seed := skeyseed(prf, nonces[:n], nonces[n:], unhex(t, v.gir))
			if want := unhex(t, v.skeyseed); !bytes.Equal(seed, want) {
				t.Fatalf("SKEYSEED = %x, want %x", seed, want)
			}
			want := unhex(t, v.dkm)
			dkm := make([]byte, len(want))
			if err := prf.Plus(dkm, seed, nonces, spis); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dkm, want) {
				t.Fatalf("DKM = %x, want %x", dkm, want)
			}
			// The split must be a prefix of DKM in RFC 7296 §2.14 order.
			encr, _ := LookupEncr(wire.ENCR_AES_GCM_16, 128)
			if 3*prf.Size+2*encr.KeyLen > len(want) {
				return
			}
			keys, err := deriveIKEKeys(prf, encr, nil, seed, nonces[:n], nonces[n:], be64(spis[:8]), be64(spis[8:]))
			if err != nil {
				t.Fatal(err)
			}
			got := bytes.Join([][]byte{keys.D, keys.Ai, keys.Ar, keys.Ei, keys.Er, keys.Pi, keys.Pr}, nil)
			if !bytes.HasPrefix(want, got) {
				t.Fatalf("keys %x are not a prefix of DKM", got)
			}
			if keys.Ai != nil || keys.Ar != nil || len(keys.Ei) != 20 {
				t.Fatalf("AEAD split: ai=%d ar=%d ei=%d", len(keys.Ai), len(keys.Ar), len(keys.Ei))
			}
		})
	}
}

func TestPRFPlusLimit(t *testing.T) {
	prf := mustPRF(t, wire.PRF_HMAC_SHA2_256)
	key := []byte("key")
	if err := prf.Plus(make([]byte, 255*32+1), key, []byte("seed")); !errors.Is(err, ErrKeyMaterialTooLong) {
		t.Fatalf("256 blocks: err = %v, want ErrKeyMaterialTooLong", err)
	}
	// 255 blocks is the maximum; the last block is prf(K, T254 | S | 0xff),
	// computed here without Plus.
	out := make([]byte, 255*32)
	if err := prf.Plus(out, key, []byte("seed")); err != nil {
		t.Fatal(err)
	}
	tn := prf.Sum(nil, key, []byte("seed"), []byte{1})
	for n := 2; n <= 255; n++ {
		tn = prf.Sum(nil, key, tn, []byte("seed"), []byte{byte(n)})
	}
	if !bytes.Equal(out[254*32:], tn) {
		t.Fatal("block 255 differs from the RFC 7296 §2.13 definition")
	}
	// A length that is not a multiple of the block size truncates the last block.
	short := make([]byte, 33)
	if err := prf.Plus(short, key, []byte("seed")); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(short, out[:33]) {
		t.Fatal("prf+ output is not a prefix of a longer output")
	}
}

func TestIKEKeysTransformMismatch(t *testing.T) {
	prf := mustPRF(t, wire.PRF_HMAC_SHA2_256)
	gcm, _ := LookupEncr(wire.ENCR_AES_GCM_16, 256)
	cbc, _ := LookupEncr(wire.ENCR_AES_CBC, 256)
	integ, _ := LookupInteg(wire.AUTH_HMAC_SHA2_256_128)
	if _, err := NewIKEKeys(prf, gcm, integ, []byte("g"), []byte("n"), []byte("n"), 1, 2); err == nil {
		t.Error("AEAD with an integrity transform was accepted")
	}
	if _, err := NewIKEKeys(prf, cbc, nil, []byte("g"), []byte("n"), []byte("n"), 1, 2); err == nil {
		t.Error("CBC without an integrity transform was accepted")
	}
}

func TestKeysRedactedAndZeroed(t *testing.T) {
	prf := mustPRF(t, wire.PRF_HMAC_SHA2_256)
	cbc, _ := LookupEncr(wire.ENCR_AES_CBC, 256)
	integ, _ := LookupInteg(wire.AUTH_HMAC_SHA2_256_128)
	keys, err := NewIKEKeys(prf, cbc, integ, []byte("shared"), []byte("ni"), []byte("nr"), 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	child, err := DeriveChildKeys(prf, keys.D, nil, []byte("ni"), []byte("nr"), 32, 32)
	if err != nil {
		t.Fatal(err)
	}
	secrets := [][]byte{keys.D, keys.Ai, keys.Ar, keys.Ei, keys.Er, keys.Pi, keys.Pr,
		child.InitEncr, child.InitInteg, child.RespEncr, child.RespInteg}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "keys", keys, "child", child)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "keys", *keys, "child", *child)
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		for _, v := range []any{keys, *keys, child, *child, []any{keys}, struct{ K *IKEKeys }{keys}} {
			out := fmt.Sprintf(format, v)
			for _, s := range secrets {
				for _, enc := range []string{hex.EncodeToString(s), strings.ToUpper(hex.EncodeToString(s)), fmt.Sprint(s[:4])[1:]} {
					if strings.Contains(out, enc) {
						t.Fatalf("%s of %T leaks a key: %s", format, v, out)
					}
				}
			}
			if !strings.Contains(out, "[redacted]") && format != "%#v" {
				t.Errorf("%s of %T = %s, want [redacted]", format, v, out)
			}
		}
	}
	for _, s := range secrets {
		if strings.Contains(logged.String(), hex.EncodeToString(s)) {
			t.Fatalf("slog output leaks a key: %s", logged.String())
		}
	}
	if strings.Count(logged.String(), "[redacted]") != 4 {
		t.Errorf("slog output = %s, want four [redacted]", logged.String())
	}

	keys.Zero()
	child.Zero()
	for i, s := range secrets {
		if !bytes.Equal(s, make([]byte, len(s))) {
			t.Errorf("key %d not zeroed: %x", i, s)
		}
	}
	if keys.D != nil || keys.Ei != nil || child.InitEncr != nil {
		t.Error("Zero left references to the key material")
	}
}

// TestKeySlicesCapped checks that appending to one key cannot overwrite the
// next: they share one buffer.
func TestKeySlicesCapped(t *testing.T) {
	prf := mustPRF(t, wire.PRF_HMAC_SHA2_256)
	cbc, _ := LookupEncr(wire.ENCR_AES_CBC, 128)
	integ, _ := LookupInteg(wire.AUTH_HMAC_SHA1_96)
	keys, err := NewIKEKeys(prf, cbc, integ, []byte("g"), []byte("ni"), []byte("nr"), 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	ai := bytes.Clone(keys.Ai)
	_ = append(keys.D, 0xee)
	if !bytes.Equal(keys.Ai, ai) {
		t.Fatal("append to SK_d overwrote SK_ai")
	}
	for i, k := range [][]byte{keys.D, keys.Ai, keys.Ar, keys.Ei, keys.Er, keys.Pi, keys.Pr} {
		if cap(k) != len(k) {
			t.Errorf("key %d: cap %d, len %d", i, cap(k), len(k))
		}
	}
}
