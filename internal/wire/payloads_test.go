package wire

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"
)

// RFC 5903 §8.1 and §8.2: the KEi payloads for groups 19 and 20, generic
// payload header included.
const (
	rfc5903KEi256 = `00000048 00130000 DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF
 945D0C37 72581180 5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58
 389E0577 B8990BB3`
	rfc5903GIx256 = `DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180`
	rfc5903GIy256 = `5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3`

	rfc5903KEr384 = `00000068 00140000 E558DBEF 53EECDE3 D3FCCFC1 AEA08A89 A987475D 12FD950D
 83CFA417 32BC509D 0D1AC43A 0336DEF9 6FDA41D0 774A3571 DCFBEC7A ACF31964
 72169E83 8430367F 66EEBE3C 6E70C416 DD5F0C68 759DD1FF F83FA401 42209DFF
 5EAAD96D B9E6386C`
	rfc5903GRx384 = `E558DBEF 53EECDE3 D3FCCFC1 AEA08A89 A987475D 12FD950D 83CFA417 32BC509D
 0D1AC43A 0336DEF9 6FDA41D0 774A3571`
	rfc5903GRy384 = `DCFBEC7A ACF31964 72169E83 8430367F 66EEBE3C 6E70C416 DD5F0C68 759DD1FF
 F83FA401 42209DFF 5EAAD96D B9E6386C`
)

func TestKERFC5903(t *testing.T) {
	for _, tc := range []struct {
		name          string
		payload, x, y string
		group         uint16
	}{
		{"§8.1 KEi", rfc5903KEi256, rfc5903GIx256, rfc5903GIy256, DH_ECP_256},
		{"§8.2 KEr", rfc5903KEr384, rfc5903GRx384, rfc5903GRy384, DH_ECP_384},
	} {
		raw := hexBytes(t, tc.payload)
		ps, err := ParseChain(nil, PayloadKE, raw)
		if err != nil || len(ps) != 1 {
			t.Fatalf("%s: chain: %v", tc.name, err)
		}
		ke, err := ParseKE(ps[0].Body)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		want := append(hexBytes(t, tc.x), hexBytes(t, tc.y)...)
		if ke.Group != tc.group || !bytes.Equal(ke.Data, want) {
			t.Fatalf("%s: got group %d data %x", tc.name, ke.Group, ke.Data)
		}
		var w Builder
		w.ResetChain(nil)
		w.AddKE(KE{Group: tc.group, Data: want})
		if got := w.Finish(); !bytes.Equal(got, raw) {
			t.Fatalf("%s: AddKE:\n got %x\nwant %x", tc.name, got, raw)
		}
	}
}

// RFC 6311 §6 notify layouts, assembled by hand from the figures: generic
// header (next 0, length), Protocol ID 0, SPI Size 0, type, data.
func TestNotifyRFC6311Layouts(t *testing.T) {
	var w Builder
	w.ResetChain(nil)
	w.AddNotify(Notify{Type: IKEV2_MESSAGE_ID_SYNC_SUPPORTED})
	w.AddNotify(Notify{Type: IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED})
	w.AddMessageIDSync(MessageIDSync{Nonce: 0xdeadbeef, SendReq: 0x10, RecvReq: 0x20})
	w.AddReplayCounterSync(ReplayCounterSync{Delta: 1 << 30})
	w.AddReplayCounterSync(ReplayCounterSync{Delta: 1 << 40, ESN: true})
	got := w.Finish()
	want := hexBytes(t, `
		29 00 0008 00 00 4024
		29 00 0008 00 00 4025
		29 00 0014 00 00 4026 deadbeef 00000010 00000020
		29 00 000c 00 00 4027 40000000
		00 00 0010 00 00 4027 0000010000000000`)
	if !bytes.Equal(got, want) {
		t.Fatalf("encoding:\n got %x\nwant %x", got, want)
	}

	ps, err := ParseChain(nil, PayloadNotify, want)
	if err != nil || len(ps) != 5 {
		t.Fatalf("chain: %v", err)
	}
	var ns [5]Notify
	for i, p := range ps {
		if ns[i], err = ParseNotify(p.Body); err != nil {
			t.Fatalf("notify %d: %v", i, err)
		}
	}
	if ns[0].Type != IKEV2_MESSAGE_ID_SYNC_SUPPORTED || ns[1].Type != IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED {
		t.Fatalf("capability types: %v %v", ns[0].Type, ns[1].Type)
	}
	s, err := ns[2].MessageIDSync()
	if err != nil || s != (MessageIDSync{Nonce: 0xdeadbeef, SendReq: 0x10, RecvReq: 0x20}) {
		t.Fatalf("MessageIDSync: %+v %v", s, err)
	}
	r, err := ns[3].ReplayCounterSync()
	if err != nil || r != (ReplayCounterSync{Delta: 1 << 30}) {
		t.Fatalf("ReplayCounterSync 32: %+v %v", r, err)
	}
	r, err = ns[4].ReplayCounterSync()
	if err != nil || r != (ReplayCounterSync{Delta: 1 << 40, ESN: true}) {
		t.Fatalf("ReplayCounterSync 64: %+v %v", r, err)
	}
}

func TestNotifyDataAccessors(t *testing.T) {
	var w Builder
	w.ResetChain(nil)
	nat := bytes.Repeat([]byte{0xab}, 20)
	w.AddNotify(Notify{Type: COOKIE, Data: []byte{1, 2, 3}})
	w.AddNotify(Notify{Type: NAT_DETECTION_SOURCE_IP, Data: nat})
	w.AddNotify(Notify{Type: NAT_DETECTION_DESTINATION_IP, Data: nat})
	w.AddSignatureHashAlgorithms(HashSHA2_256, HashSHA2_384, HashSHA2_512, HashIdentity)
	w.AddNotifyUint(SET_WINDOW_SIZE, 4, 64)
	w.AddNotifyUint(INVALID_KE_PAYLOAD, 2, uint64(DH_ECP_256))
	w.AddNotifyUint(INVALID_MESSAGE_ID, 4, 0x01020304)
	w.AddNotifyUint(UNSUPPORTED_CRITICAL_PAYLOAD, 1, 200)
	w.AddRekeySA(ProtoESP, 0xc0ffee01)
	ps, err := ParseChain(nil, w.First(), w.Finish())
	if err != nil || len(ps) != 9 {
		t.Fatalf("chain: %v %d", err, len(ps))
	}
	var n [9]Notify
	for i := range ps {
		if n[i], err = ParseNotify(ps[i].Body); err != nil {
			t.Fatalf("notify %d: %v", i, err)
		}
	}
	if c, err := n[0].Cookie(); err != nil || !bytes.Equal(c, []byte{1, 2, 3}) {
		t.Errorf("Cookie: %x %v", c, err)
	}
	for i := 1; i <= 2; i++ {
		if d, err := n[i].NATDetection(); err != nil || !bytes.Equal(d[:], nat) {
			t.Errorf("NATDetection %d: %x %v", i, d, err)
		}
	}
	var arr [8]uint16
	if hs, err := n[3].SignatureHashAlgorithms(arr[:0]); err != nil ||
		!reflect.DeepEqual(hs, []uint16{HashSHA2_256, HashSHA2_384, HashSHA2_512, HashIdentity}) {
		t.Errorf("SignatureHashAlgorithms: %v %v", hs, err)
	}
	if v, err := n[4].WindowSize(); err != nil || v != 64 {
		t.Errorf("WindowSize: %v %v", v, err)
	}
	if v, err := n[5].InvalidKEGroup(); err != nil || v != DH_ECP_256 {
		t.Errorf("InvalidKEGroup: %v %v", v, err)
	}
	if v, err := n[6].InvalidMessageID(); err != nil || v != 0x01020304 {
		t.Errorf("InvalidMessageID: %v %v", v, err)
	}
	if v, err := n[7].UnsupportedCriticalPayload(); err != nil || v != 200 {
		t.Errorf("UnsupportedCriticalPayload: %v %v", v, err)
	}
	if p, spi, err := n[8].RekeySA(); err != nil || p != ProtoESP || spi != 0xc0ffee01 {
		t.Errorf("RekeySA: %v %x %v", p, spi, err)
	}

	// Every accessor refuses a notify of another type.
	other := Notify{Type: INITIAL_CONTACT}
	errs := []error{}
	_, err = other.MessageIDSync()
	errs = append(errs, err)
	_, err = other.ReplayCounterSync()
	errs = append(errs, err)
	_, err = other.Cookie()
	errs = append(errs, err)
	_, err = other.NATDetection()
	errs = append(errs, err)
	_, err = other.SignatureHashAlgorithms(nil)
	errs = append(errs, err)
	_, err = other.WindowSize()
	errs = append(errs, err)
	_, err = other.InvalidKEGroup()
	errs = append(errs, err)
	_, err = other.InvalidMessageID()
	errs = append(errs, err)
	_, err = other.UnsupportedCriticalPayload()
	errs = append(errs, err)
	_, _, err = other.RekeySA()
	errs = append(errs, err)
	for i, err := range errs {
		wantSyntax(t, "wrong type accessor "+itoa(uint64(i)), err, PayloadNotify)
	}
}

func TestNotifyDataLengthMalformed(t *testing.T) {
	// Each body is a Notify body (Protocol, SPI Size, Type, SPI, Data)
	// whose data length or SPI is wrong for its type: INVALID_SYNTAX.
	cases := map[string]string{
		"16420 with data":            "00 00 4024 00",
		"16421 with SPI":             "03 04 4025 01020304",
		"16422 short":                "00 00 4026 0000000100000002000000",
		"16422 long":                 "00 00 4026 00000001000000020000000300",
		"16422 with SPI":             "01 08 4026 0102030405060708 000000010000000200000003",
		"16423 two octets":           "00 00 4027 0001",
		"16423 six octets":           "00 00 4027 000000000001",
		"16423 with SPI":             "03 04 4027 01020304 00000001",
		"cookie empty":               "00 00 4006",
		"cookie 65 octets":           "00 00 4006 " + hexRepeat("aa", 65),
		"NAT source 19":              "00 00 4004 " + hexRepeat("aa", 19),
		"NAT destination 21":         "00 00 4005 " + hexRepeat("aa", 21),
		"hash algorithms odd":        "00 00 402f 000200",
		"window size 2":              "00 00 4001 0001",
		"invalid KE 4":               "00 00 0011 00000013",
		"invalid message ID 2":       "00 00 0009 0001",
		"unsupported critical empty": "00 00 0001",
		"REKEY_SA without SPI":       "03 00 4009",
		"REKEY_SA with data":         "03 04 4009 01020304 00",
		"INITIAL_CONTACT with data":  "00 00 4000 00",
		"fragmentation with data":    "00 00 402e 00",
		"SPI size 3":                 "03 03 4000 010203",
		"SPI beyond payload":         "03 04 4000 0102",
		"truncated":                  "00 00 40",
	}
	for name, body := range cases {
		_, err := ParseNotify(hexBytes(t, body))
		wantSyntax(t, name, err, PayloadNotify)
	}
	// Unknown status and error types pass with any data (RFC 7296 §3.10.1).
	for _, body := range []string{"00 00 7fff 0102", "00 00 3fff", "03 04 4000 01020304"} {
		if _, err := ParseNotify(hexBytes(t, body)); err != nil {
			t.Errorf("%s: %v", body, err)
		}
	}
}

func hexRepeat(h string, n int) string {
	return string(bytes.Repeat([]byte(h), n))
}

func TestPayloadRoundTrips(t *testing.T) {
	ke := KE{Group: DH_CURVE25519, Data: bytes.Repeat([]byte{7}, 32)}
	idi := ID{Type: ID_FQDN, Data: []byte("client.example.org")}
	idr := ID{Type: ID_IPV4_ADDR, Data: []byte{192, 0, 2, 1}}
	cert := Cert{Encoding: CertX509Signature, Data: []byte{0x30, 0x82, 0x01, 0x00}}
	creq := CertReq{Encoding: CertX509Signature, Authorities: bytes.Repeat([]byte{9}, 40)}
	auth := Auth{Method: AuthSharedKey, Data: bytes.Repeat([]byte{5}, 32)}
	nonce := bytes.Repeat([]byte{3}, 32)
	n := Notify{Protocol: ProtoESP, SPI: []byte{1, 2, 3, 4}, Type: NotifyType(40000), Data: []byte("x")}
	del := Delete{Protocol: ProtoESP, SPISize: 4, Count: 2, SPIs: []byte{1, 2, 3, 4, 5, 6, 7, 8}}
	vid := []byte("hike")
	tsi := []TrafficSelector{
		{Type: TS_IPV4_ADDR_RANGE, Protocol: 17, StartPort: 500, EndPort: 4500,
			Start: netip.MustParseAddr("10.0.0.0"), End: netip.MustParseAddr("10.0.0.255")},
		{Type: TS_IPV6_ADDR_RANGE, StartPort: 0, EndPort: 65535,
			Start: netip.MustParseAddr("2001:db8::"), End: netip.MustParseAddr("2001:db8::ffff")},
		{Type: TSType(10), Protocol: 0, Data: []byte{0, 0, 0, 1, 2, 3}},
	}
	tsr := tsi[:1]
	cp := CP{Type: CFG_REQUEST, Attributes: []CPAttribute{
		{Type: INTERNAL_IP4_ADDRESS, Value: []byte{}},
		{Type: INTERNAL_IP6_ADDRESS, Value: []byte{}},
		{Type: APPLICATION_VERSION, Value: []byte("hike 0.1")},
	}}
	eapReq := EAP{Code: EAPRequest, Identifier: 7, Type: 1, Data: []byte("id")}
	eapOK := EAP{Code: EAPSuccess, Identifier: 8}

	var w Builder
	w.Reset(nil, Header{SPIi: 1, SPIr: 2, Exchange: IKE_AUTH, Flags: FlagInitiator, MessageID: 1})
	w.AddKE(ke)
	w.AddID(PayloadIDi, idi)
	w.AddID(PayloadIDr, idr)
	w.AddCert(cert)
	w.AddCertReq(creq)
	w.AddAuth(auth)
	w.AddNonce(nonce)
	w.AddNotify(n)
	w.AddDelete(del)
	w.AddDeleteIKE()
	w.AddDeleteChild(ProtoAH, 0x11223344)
	w.AddVendorID(vid)
	w.AddTS(PayloadTSi, tsi)
	w.AddTS(PayloadTSr, tsr)
	w.AddCP(cp)
	w.AddEAP(eapReq)
	w.AddEAP(eapOK)
	msg := w.Finish()

	var m Message
	if err := m.Parse(msg); err != nil {
		t.Fatal(err)
	}
	types := []PayloadType{PayloadKE, PayloadIDi, PayloadIDr, PayloadCERT, PayloadCERTREQ, PayloadAUTH,
		PayloadNonce, PayloadNotify, PayloadDelete, PayloadDelete, PayloadDelete, PayloadVendor,
		PayloadTSi, PayloadTSr, PayloadCP, PayloadEAP, PayloadEAP}
	if len(m.Payloads) != len(types) {
		t.Fatalf("%d payloads, want %d", len(m.Payloads), len(types))
	}
	for i, p := range m.Payloads {
		if p.Type != types[i] {
			t.Fatalf("payload %d is %v, want %v", i, p.Type, types[i])
		}
	}
	body := func(i int) []byte { return m.Payloads[i].Body }
	check := func(name string, got, want any, err error) {
		t.Helper()
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v (%v), want %+v", name, got, err, want)
		}
	}
	gke, err := ParseKE(body(0))
	check("KE", gke, ke, err)
	gid, err := ParseID(PayloadIDi, body(1))
	idi.Raw = append([]byte{byte(ID_FQDN), 0, 0, 0}, idi.Data...)
	check("IDi", gid, idi, err)
	gid, err = ParseID(PayloadIDr, body(2))
	idr.Raw = idr.Append(nil)
	check("IDr", gid, idr, err)
	gcert, err := ParseCert(body(3))
	check("CERT", gcert, cert, err)
	gcreq, err := ParseCertReq(body(4))
	check("CERTREQ", gcreq, creq, err)
	if gcreq.NumAuthorities() != 2 || !bytes.Equal(gcreq.Authority(1), creq.Authorities[20:]) {
		t.Errorf("CERTREQ authorities")
	}
	gauth, err := ParseAuth(body(5))
	check("AUTH", gauth, auth, err)
	gnonce, err := ParseNonce(body(6))
	check("Nonce", gnonce, nonce, err)
	gn, err := ParseNotify(body(7))
	check("Notify", gn, n, err)
	gdel, err := ParseDelete(body(8))
	check("Delete", gdel, del, err)
	if gdel.SPI(1) != 0x05060708 {
		t.Errorf("Delete.SPI(1) = %x", gdel.SPI(1))
	}
	gdel, err = ParseDelete(body(9))
	check("Delete IKE", gdel, Delete{Protocol: ProtoIKE, SPIs: []byte{}}, err)
	gdel, err = ParseDelete(body(10))
	check("Delete AH", gdel, Delete{Protocol: ProtoAH, SPISize: 4, Count: 1, SPIs: []byte{0x11, 0x22, 0x33, 0x44}}, err)
	gvid, err := ParseVendorID(body(11))
	check("V", gvid, vid, err)
	gts, err := ParseTS(nil, PayloadTSi, body(12))
	check("TSi", gts, tsi, err)
	gts, err = ParseTS(nil, PayloadTSr, body(13))
	check("TSr", gts, tsr, err)
	gcp, err := ParseCP(nil, body(14))
	check("CP", gcp, cp, err)
	geap, err := ParseEAP(body(15))
	eapReq.Raw = eapReq.Append(nil)
	check("EAP request", geap, eapReq, err)
	geap, err = ParseEAP(body(16))
	eapOK.Raw = []byte{EAPSuccess, 8, 0, 4}
	check("EAP success", geap, eapOK, err)
}

func TestEncryptedRoundTrip(t *testing.T) {
	h := Header{SPIi: 0xa, SPIr: 0xb, Exchange: INFORMATIONAL, MessageID: 9}
	data := bytes.Repeat([]byte{0xee}, 40)

	var w Builder
	w.Reset(nil, h)
	w.End(append(w.StartSK(PayloadNotify), data...))
	msg := w.Finish()
	var m Message
	if err := m.Parse(msg); err != nil {
		t.Fatal(err)
	}
	e, ok, err := m.Encrypted()
	if err != nil || !ok || e.Type != PayloadSK || e.Next != PayloadNotify || !bytes.Equal(e.Data, data) {
		t.Fatalf("SK: %+v %v %v", e, ok, err)
	}
	if aad := e.AAD(m.Raw); len(aad) != HeaderLen+GenericHeaderLen || !bytes.Equal(aad, msg[:32]) {
		t.Fatalf("AAD %x", aad)
	}
	if m.Header.NextPayload != PayloadSK {
		t.Fatalf("header next %v", m.Header.NextPayload)
	}

	w.Reset(nil, h)
	w.AddNotify(Notify{Type: INITIAL_CONTACT}) // an unencrypted payload before SKF
	w.End(append(w.StartSKF(PayloadIDi, 1, 3), data...))
	msg = w.Finish()
	if err := m.Parse(msg); err != nil {
		t.Fatal(err)
	}
	e, ok, err = m.Encrypted()
	if err != nil || !ok || e.Type != PayloadSKF || e.Next != PayloadIDi || e.Number != 1 || e.Total != 3 ||
		!bytes.Equal(e.Data, data) {
		t.Fatalf("SKF: %+v %v %v", e, ok, err)
	}
	if aad := e.AAD(m.Raw); !bytes.Equal(aad, msg[:len(msg)-len(data)]) || len(aad) != HeaderLen+8+8 {
		t.Fatalf("SKF AAD %x", aad)
	}

	// A message without SK has no encrypted view.
	w.Reset(nil, h)
	w.AddNonce(make([]byte, 16))
	if err := m.Parse(w.Finish()); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := m.Encrypted(); ok || err != nil {
		t.Fatalf("plain message: ok=%v err=%v", ok, err)
	}
}

func TestPayloadMalformed(t *testing.T) {
	type parser func(body []byte) error
	wrap := func(f func([]byte) error) parser { return f }
	ke := wrap(func(b []byte) error { _, err := ParseKE(b); return err })
	idi := wrap(func(b []byte) error { _, err := ParseID(PayloadIDi, b); return err })
	idr := wrap(func(b []byte) error { _, err := ParseID(PayloadIDr, b); return err })
	cert := wrap(func(b []byte) error { _, err := ParseCert(b); return err })
	creq := wrap(func(b []byte) error { _, err := ParseCertReq(b); return err })
	auth := wrap(func(b []byte) error { _, err := ParseAuth(b); return err })
	nonce := wrap(func(b []byte) error { _, err := ParseNonce(b); return err })
	del := wrap(func(b []byte) error { _, err := ParseDelete(b); return err })
	tsi := wrap(func(b []byte) error { _, err := ParseTS(nil, PayloadTSi, b); return err })
	tsr := wrap(func(b []byte) error { _, err := ParseTS(nil, PayloadTSr, b); return err })
	cp := wrap(func(b []byte) error { _, err := ParseCP(nil, b); return err })
	eap := wrap(func(b []byte) error { _, err := ParseEAP(b); return err })
	skf := wrap(func(b []byte) error { _, err := ParseEncrypted(Payload{Type: PayloadSKF, Body: b}); return err })

	ts4 := "07 06 0010 0000 ffff 0a000000 0a0000ff"
	cases := []struct {
		name  string
		p     PayloadType
		parse parser
		body  string
	}{
		{"KE truncated", PayloadKE, ke, "00 13 00"},
		{"KE ECP-256 short", PayloadKE, ke, "0013 0000 " + hexRepeat("01", 63)},
		{"KE Curve25519 long", PayloadKE, ke, "001f 0000 " + hexRepeat("01", 33)},
		{"KE MODP-2048 empty", PayloadKE, ke, "000e 0000"},
		{"IDi truncated", PayloadIDi, idi, "02 00 00"},
		{"IDi IPv4 of 5 octets", PayloadIDi, idi, "01 000000 c000020101"},
		{"IDr IPv6 of 4 octets", PayloadIDr, idr, "05 000000 c0000201"},
		{"CERT empty", PayloadCERT, cert, ""},
		{"CERTREQ empty", PayloadCERTREQ, creq, ""},
		{"CERTREQ partial hash", PayloadCERTREQ, creq, "04 " + hexRepeat("aa", 21)},
		{"AUTH truncated", PayloadAUTH, auth, "02 0000"},
		{"AUTH without data", PayloadAUTH, auth, "02 000000"},
		{"Nonce 15 octets", PayloadNonce, nonce, hexRepeat("11", 15)},
		{"Nonce 257 octets", PayloadNonce, nonce, hexRepeat("11", 257)},
		{"Delete truncated", PayloadDelete, del, "01 00 00"},
		{"Delete IKE with SPI size 8", PayloadDelete, del, "01 08 0001 0102030405060708"},
		{"Delete ESP with SPI size 0", PayloadDelete, del, "03 00 0000"},
		{"Delete protocol 0", PayloadDelete, del, "00 00 0000"},
		{"Delete count too high", PayloadDelete, del, "03 04 0002 01020304"},
		{"Delete count too low", PayloadDelete, del, "03 04 0001 01020304 05060708"},
		{"Delete partial SPI", PayloadDelete, del, "03 04 0001 010203"},
		{"TSi truncated", PayloadTSi, tsi, "01 0000"},
		{"TSi zero selectors", PayloadTSi, tsi, "00 000000"},
		{"TSi count too high", PayloadTSi, tsi, "02 000000 " + ts4},
		{"TSi count too low", PayloadTSi, tsi, "01 000000 " + ts4 + ts4},
		{"TSi truncated selector", PayloadTSi, tsi, "01 000000 07 06 00"},
		{"TSr IPv4 length 40", PayloadTSr, tsr, "01 000000 07 00 0028" + hexRepeat("00", 36)},
		{"TSr IPv6 length 16", PayloadTSr, tsr, "01 000000 08 00 0010" + hexRepeat("00", 12)},
		{"TSr selector length 3", PayloadTSr, tsr, "01 000000 0a 00 0003"},
		{"TSr selector beyond payload", PayloadTSr, tsr, "01 000000 07 06 0010 0000 ffff 0a000000"},
		{"CP truncated", PayloadCP, cp, "01 0000"},
		{"CP truncated attribute", PayloadCP, cp, "01 000000 0001 00"},
		{"CP attribute beyond payload", PayloadCP, cp, "01 000000 0001 0004 0a0000"},
		{"EAP truncated", PayloadEAP, eap, "01 01 00"},
		{"EAP length short", PayloadEAP, eap, "02 01 0005 01 6869"},
		{"EAP length long", PayloadEAP, eap, "02 01 0008 01 6869"},
		{"EAP request without type", PayloadEAP, eap, "01 01 0004"},
		{"EAP success with data", PayloadEAP, eap, "03 01 0005 00"},
		{"EAP unknown code", PayloadEAP, eap, "09 01 0004"},
		{"SKF truncated", PayloadSKF, skf, "0001 00"},
		{"SKF number 0", PayloadSKF, skf, "0000 0002 aa"},
		{"SKF total 0", PayloadSKF, skf, "0001 0000 aa"},
		{"SKF number above total", PayloadSKF, skf, "0003 0002 aa"},
	}
	for _, c := range cases {
		wantSyntax(t, c.name, c.parse(hexBytes(t, c.body)), c.p)
	}
}

// The DPD and RFC 6311 path parses without allocating: the message, its
// notifies and deletes, the SK view and the typed sync data.
func TestHotPathDoesNotAllocate(t *testing.T) {
	var w Builder
	w.Reset(nil, Header{SPIi: 1, SPIr: 2, Exchange: INFORMATIONAL})
	w.AddMessageIDSync(MessageIDSync{Nonce: 1, SendReq: 2, RecvReq: 3})
	w.AddReplayCounterSync(ReplayCounterSync{Delta: 1 << 20})
	w.AddDeleteChild(ProtoESP, 1, 2)
	inner := w.Finish()[HeaderLen:]
	w.Reset(nil, Header{SPIi: 1, SPIr: 2, Exchange: INFORMATIONAL})
	w.End(append(w.StartSK(PayloadNotify), inner...))
	msg := w.Finish()

	var m Message
	var ps [8]Payload
	allocs := testing.AllocsPerRun(200, func() {
		if err := m.Parse(msg); err != nil {
			t.Fatal(err)
		}
		e, ok, err := m.Encrypted()
		if !ok || err != nil {
			t.Fatal("no SK")
		}
		// Pretend Data is the decrypted chain.
		chain, err := ParseChain(ps[:0], e.Next, e.Data)
		if err != nil || len(chain) != 3 {
			t.Fatal(err)
		}
		n, err := ParseNotify(chain[0].Body)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.MessageIDSync(); err != nil {
			t.Fatal(err)
		}
		if n, err = ParseNotify(chain[1].Body); err != nil {
			t.Fatal(err)
		}
		if _, err := n.ReplayCounterSync(); err != nil {
			t.Fatal(err)
		}
		d, err := ParseDelete(chain[2].Body)
		if err != nil || d.SPI(1) != 2 {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("hot-path parse allocated %v times", allocs)
	}

	buf := make([]byte, 0, 256)
	allocs = testing.AllocsPerRun(200, func() {
		w.Reset(buf[:0], Header{SPIi: 1, SPIr: 2, Exchange: INFORMATIONAL, Flags: FlagResponse})
		w.AddMessageIDSync(MessageIDSync{Nonce: 1, SendReq: 2, RecvReq: 3})
		w.AddDeleteChild(ProtoESP, 1, 2)
		w.AddSignatureHashAlgorithms(HashSHA2_256, HashSHA2_384)
		w.End(append(w.StartSK(PayloadNone), 0, 0, 0, 0))
		buf = w.Finish()
	})
	if allocs != 0 {
		t.Fatalf("hot-path build allocated %v times", allocs)
	}
}

// Layouts assembled by hand from the RFC figures.
func TestHandAssembledLayouts(t *testing.T) {
	// RFC 7296 §3.13: one TS_IPV4_ADDR_RANGE selector, TCP, all ports,
	// 10.0.0.0 - 10.0.0.255.
	ts, err := ParseTS(nil, PayloadTSi, hexBytes(t, "01 000000  07 06 0010 0000 ffff 0a000000 0a0000ff"))
	want := []TrafficSelector{{Type: TS_IPV4_ADDR_RANGE, Protocol: 6, StartPort: 0, EndPort: 0xffff,
		Start: netip.MustParseAddr("10.0.0.0"), End: netip.MustParseAddr("10.0.0.255")}}
	if err != nil || !reflect.DeepEqual(ts, want) {
		t.Errorf("TS: %+v %v", ts, err)
	}

	// RFC 7383 §2.5: the first of two fragments (Next Payload names the
	// first inner payload, IDi), then opaque IV/ciphertext/ICV.
	skf := hexBytes(t, "23 00 000c 0001 0002 aabbccdd")
	ps, err := ParseChain(nil, PayloadSKF, skf)
	if err != nil || len(ps) != 1 {
		t.Fatalf("SKF chain: %v", err)
	}
	e, err := ParseEncrypted(ps[0])
	if err != nil || e.Next != PayloadIDi || e.Number != 1 || e.Total != 2 || !bytes.Equal(e.Data, []byte{0xaa, 0xbb, 0xcc, 0xdd}) {
		t.Errorf("SKF: %+v %v", e, err)
	}

	// RFC 7296 §3.11: delete two ESP SAs.
	d, err := ParseDelete(hexBytes(t, "03 04 0002 c1000001 c1000002"))
	if err != nil || d.Count != 2 || d.SPI(0) != 0xc1000001 || d.SPI(1) != 0xc1000002 {
		t.Errorf("Delete: %+v %v", d, err)
	}

	// RFC 7296 §3.15: CFG_REQUEST for INTERNAL_IP4_ADDRESS and
	// INTERNAL_IP4_DNS, the reserved bit of the second type set (ignored).
	cp, err := ParseCP(nil, hexBytes(t, "01 000000 0001 0000 8003 0000"))
	if err != nil || cp.Type != CFG_REQUEST || len(cp.Attributes) != 2 ||
		cp.Attributes[0].Type != INTERNAL_IP4_ADDRESS || cp.Attributes[1].Type != INTERNAL_IP4_DNS {
		t.Errorf("CP: %+v %v", cp, err)
	}
}

func TestAddError(t *testing.T) {
	_, err := ParseChain(nil, PayloadType(200), []byte{0, 0x80, 0, 4})
	we, ok := err.(*Error)
	if !ok {
		t.Fatalf("got %v", err)
	}
	var w Builder
	w.ResetChain(nil)
	w.AddError(we)
	w.AddError(&Error{Notify: INVALID_SYNTAX, Payload: PayloadSA})
	want := hexBytes(t, "29 00 0009 00 00 0001 c8  00 00 0008 00 00 0007")
	if got := w.Finish(); !bytes.Equal(got, want) {
		t.Fatalf("got %x\nwant %x", got, want)
	}
}
