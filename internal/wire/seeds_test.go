package wire

import (
	"bytes"
	"net/netip"
)

// Messages shared by the fuzz seeds, the benchmarks and the tests. Random
// values are fixed patterns; only the layout matters here.

func ikeSAInitRequest() []byte {
	var w Builder
	w.Reset(nil, Header{SPIi: 0x1122334455667788, Exchange: IKE_SA_INIT, Flags: FlagInitiator})
	w.AddSA([]Proposal{
		{Num: 1, Protocol: ProtoIKE, Transforms: []Transform{
			{Type: TransformENCR, ID: ENCR_AES_GCM_16, KeyLen: 256},
			{Type: TransformPRF, ID: PRF_HMAC_SHA2_256},
			{Type: TransformDH, ID: DH_CURVE25519},
			{Type: TransformDH, ID: DH_ECP_256},
		}},
		{Num: 2, Protocol: ProtoIKE, Transforms: []Transform{
			{Type: TransformENCR, ID: ENCR_AES_CBC, KeyLen: 128},
			{Type: TransformPRF, ID: PRF_HMAC_SHA2_256},
			{Type: TransformINTEG, ID: AUTH_HMAC_SHA2_256_128},
			{Type: TransformDH, ID: DH_CURVE25519},
		}},
	})
	w.AddKE(KE{Group: DH_CURVE25519, Data: bytes.Repeat([]byte{0x25}, 32)})
	w.AddNonce(bytes.Repeat([]byte{0x4e}, 32))
	w.AddNotify(Notify{Type: NAT_DETECTION_SOURCE_IP, Data: bytes.Repeat([]byte{0x5a}, 20)})
	w.AddNotify(Notify{Type: NAT_DETECTION_DESTINATION_IP, Data: bytes.Repeat([]byte{0xda}, 20)})
	w.AddSignatureHashAlgorithms(HashSHA2_256, HashSHA2_384, HashSHA2_512, HashIdentity)
	w.AddNotify(Notify{Type: IKEV2_FRAGMENTATION_SUPPORTED})
	w.AddVendorID([]byte("hike-vpn"))
	return w.Finish()
}

// ikeAuthInner is the plaintext chain of a typical remote-access IKE_AUTH
// request with PSK authentication, no CERTREQ.
func ikeAuthInner(buf []byte) (PayloadType, []byte) {
	var w Builder
	w.ResetChain(buf)
	appendIKEAuthInner(&w)
	return w.First(), w.Finish()
}

var (
	authIDi  = ID{Type: ID_FQDN, Data: []byte("roadwarrior.example.org")}
	authAUTH = Auth{Method: AuthSharedKey, Data: bytes.Repeat([]byte{0xa7}, 32)}
	authCP   = CP{Type: CFG_REQUEST, Attributes: []CPAttribute{{Type: INTERNAL_IP4_ADDRESS}, {Type: INTERNAL_IP4_DNS}, {Type: INTERNAL_IP6_ADDRESS}}}
	authSA   = []Proposal{
		{Num: 1, Protocol: ProtoESP, SPI: []byte{0xc1, 0, 0, 1}, Transforms: []Transform{
			{Type: TransformENCR, ID: ENCR_AES_GCM_16, KeyLen: 256},
			{Type: TransformESN, ID: ESN_NO},
		}},
		{Num: 2, Protocol: ProtoESP, SPI: []byte{0xc1, 0, 0, 1}, Transforms: []Transform{
			{Type: TransformENCR, ID: ENCR_AES_CBC, KeyLen: 128},
			{Type: TransformINTEG, ID: AUTH_HMAC_SHA2_256_128},
			{Type: TransformESN, ID: ESN_NO},
		}},
	}
	authTSi = []TrafficSelector{{Type: TS_IPV4_ADDR_RANGE, EndPort: 0xffff,
		Start: netip.AddrFrom4([4]byte{}), End: netip.AddrFrom4([4]byte{255, 255, 255, 255})}}
	authTSr = []TrafficSelector{{Type: TS_IPV4_ADDR_RANGE, EndPort: 0xffff,
		Start: netip.AddrFrom4([4]byte{10, 0, 0, 0}), End: netip.AddrFrom4([4]byte{10, 255, 255, 255})}}
)

func appendIKEAuthInner(w *Builder) {
	w.AddID(PayloadIDi, authIDi)
	w.AddAuth(authAUTH)
	w.AddNotify(Notify{Type: INITIAL_CONTACT})
	w.AddNotify(Notify{Type: IKEV2_MESSAGE_ID_SYNC_SUPPORTED})
	w.AddNotify(Notify{Type: IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED})
	w.AddCP(authCP)
	w.AddSA(authSA)
	w.AddTS(PayloadTSi, authTSi)
	w.AddTS(PayloadTSr, authTSr)
}

// ikeAuthPlain is the IKE_AUTH chain behind a bare header, so that fuzzing
// reaches the inner payload parsers through Message.Parse.
func ikeAuthPlain() []byte {
	var w Builder
	w.Reset(nil, Header{SPIi: 1, SPIr: 2, Exchange: IKE_AUTH, Flags: FlagInitiator, MessageID: 1})
	appendIKEAuthInner(&w)
	return w.Finish()
}

// encrypt wraps a chain in an SK payload whose data is the chain itself
// between a fake 16-octet IV and 16-octet ICV.
func encrypt(h Header, first PayloadType, chain []byte) []byte {
	var w Builder
	w.Reset(nil, h)
	b := append(w.StartSK(first), make([]byte, 16)...)
	b = append(b, chain...)
	w.End(append(b, make([]byte, 16)...))
	return w.Finish()
}

func ikeAuthEncrypted() []byte {
	first, chain := ikeAuthInner(nil)
	return encrypt(Header{SPIi: 1, SPIr: 2, Exchange: IKE_AUTH, Flags: FlagInitiator, MessageID: 1}, first, chain)
}

func syncRequestPlain() []byte {
	var w Builder
	w.Reset(nil, Header{SPIi: 1, SPIr: 2, Exchange: INFORMATIONAL, Flags: FlagInitiator})
	w.AddMessageIDSync(MessageIDSync{Nonce: 0x01020304, SendReq: 100, RecvReq: 50})
	w.AddReplayCounterSync(ReplayCounterSync{Delta: 1 << 30})
	return w.Finish()
}

func deleteRequestPlain() []byte {
	var w Builder
	w.Reset(nil, Header{SPIi: 1, SPIr: 2, Exchange: INFORMATIONAL, MessageID: 7})
	w.AddDeleteChild(ProtoESP, 0xc1000001, 0xc1000002)
	w.AddDeleteIKE()
	w.AddNotify(Notify{Type: COOKIE, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8}})
	w.AddNotifyUint(INVALID_KE_PAYLOAD, 2, uint64(DH_ECP_256))
	w.AddRekeySA(ProtoESP, 0xc1000001)
	w.AddCertReq(CertReq{Encoding: CertX509Signature, Authorities: make([]byte, 20)})
	w.AddCert(Cert{Encoding: CertX509Signature, Data: []byte{0x30, 0}})
	w.AddEAP(EAP{Code: EAPResponse, Identifier: 1, Type: 1, Data: []byte("me")})
	return w.Finish()
}

func dpdRequest() []byte {
	var w Builder
	w.Reset(nil, Header{SPIi: 1, SPIr: 2, Exchange: INFORMATIONAL, Flags: FlagInitiator, MessageID: 5})
	w.End(append(w.StartSK(PayloadNone), make([]byte, 32)...))
	return w.Finish()
}

func fragmentMessage() []byte {
	var w Builder
	w.Reset(nil, Header{SPIi: 1, SPIr: 2, Exchange: IKE_AUTH, Flags: FlagInitiator, MessageID: 1})
	w.End(append(w.StartSKF(PayloadIDi, 1, 2), make([]byte, 48)...))
	return w.Finish()
}

func seedMessages() [][]byte {
	return [][]byte{ikeSAInitRequest(), ikeAuthPlain(), ikeAuthEncrypted(), syncRequestPlain(),
		encrypt(Header{SPIi: 1, SPIr: 2, Exchange: INFORMATIONAL}, PayloadNotify, syncRequestPlain()[HeaderLen:]),
		deleteRequestPlain(), dpdRequest(), fragmentMessage()}
}
