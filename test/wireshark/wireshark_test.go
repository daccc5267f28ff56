// Package wireshark_test cross-checks hike's codec and crypto against an
// independent implementation: it writes a capture of a whole conversation
// produced by internal/wire and internal/crypto, hands Wireshark the keys,
// and compares what tshark dissects, after decryption, with what hike meant
// to encode.
//
// tshark 4.0 decrypts each SKF fragment (RFC 7383) and dissects the
// reassembled message in the frame of the last one, so fragmented messages
// are checked as completely as whole ones.
package wireshark_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/hike-vpn/hike/internal/crypto"
	"github.com/hike-vpn/hike/internal/wire"
)

var (
	client  = netip.MustParseAddr("192.0.2.1")
	gateway = netip.MustParseAddr("192.0.2.2")
)

// child describes the first Child SA's negotiation inside IKE_AUTH.
type child struct {
	offer, policy []wire.Proposal
	clientSPI     uint32
	gatewaySPI    uint32
	vip           netip.Addr
	dns           netip.Addr
	tsr           wire.TrafficSelector
	idi, idr      wire.ID
}

func espProposal(spi uint32, ts ...wire.Transform) wire.Proposal {
	return wire.Proposal{Num: 1, Protocol: wire.ProtoESP, SPI: binary.BigEndian.AppendUint32(nil, spi), Transforms: ts}
}

// ikeAuth runs IKE_AUTH with PSK authentication as hike's initiator and
// responder build it (ike.authExchange and the responder's answer), and
// returns the two messages' frames. reqMax or respMax > 0 sends that
// message in SKF fragments (RFC 7383) of at most so many octets.
func ikeAuth(t *testing.T, sa *ikeSA, c child, psk []byte, reqMax, respMax int) (req, resp []frame) {
	t.Helper()
	anyTS := wire.TrafficSelector{Type: wire.TS_IPV4_ADDR_RANGE, Start: netip.IPv4Unspecified(),
		End: netip.MustParseAddr("255.255.255.255"), EndPort: 65535}
	vipTS := wire.TrafficSelector{Type: wire.TS_IPV4_ADDR_RANGE, Start: c.vip, End: c.vip, EndPort: 65535}

	// Initiator: AUTH = prf(prf(PSK, "Key Pad for IKEv2"),
	// IKE_SA_INIT request | Nr | prf(SK_pi, IDi body)), RFC 7296 §2.15.
	build := func(m *msg) {
		idi := m.id(wire.PayloadIDi, c.idi)
		m.id(wire.PayloadIDr, c.idr)
		signed := crypto.SignedOctets(nil, sa.prf, sa.initReq, sa.nr, sa.keys.Pi, idi)
		auth := crypto.PSKAuth(nil, sa.prf, psk, signed)
		checkPSKAuth(t, auth, psk, sa.initReq, sa.nr, sa.keys.Pi, idi)
		m.auth(wire.AuthSharedKey, auth)
		m.notify(wire.INITIAL_CONTACT, nil)
		m.cp(wire.CP{Type: wire.CFG_REQUEST, Attributes: []wire.CPAttribute{
			{Type: wire.INTERNAL_IP4_ADDRESS}, {Type: wire.INTERNAL_IP4_DNS}}})
		m.notify(wire.IKEV2_MESSAGE_ID_SYNC_SUPPORTED, nil)
		m.notify(wire.IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED, nil)
		m.sa(c.offer)
		m.ts(wire.PayloadTSi, anyTS)
		m.ts(wire.PayloadTSr, c.tsr)
	}
	req = sa.protect(t, "IKE_AUTH request", wire.IKE_AUTH, 1, true, false, reqMax, build)

	// Responder: negotiate the Child SA from the offer as hike's codec
	// carries it.
	offered, err := wire.ParseSA(nil, wire.AppendSA(nil, c.offer))
	if err != nil {
		t.Fatal(err)
	}
	sel, err := crypto.Select(offered, c.policy, wire.ProtoESP, wire.DH_NONE)
	if err != nil {
		t.Fatal(err)
	}
	chosen := sel.Proposal
	chosen.SPI = binary.BigEndian.AppendUint32(nil, c.gatewaySPI)
	resp = sa.protect(t, "IKE_AUTH response", wire.IKE_AUTH, 1, false, true, respMax, func(m *msg) {
		idr := m.id(wire.PayloadIDr, c.idr)
		signed := crypto.SignedOctets(nil, sa.prf, sa.initResp, sa.ni, sa.keys.Pr, idr)
		auth := crypto.PSKAuth(nil, sa.prf, psk, signed)
		checkPSKAuth(t, auth, psk, sa.initResp, sa.ni, sa.keys.Pr, idr)
		m.auth(wire.AuthSharedKey, auth)
		m.notify(wire.IKEV2_MESSAGE_ID_SYNC_SUPPORTED, nil)
		m.notify(wire.IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED, nil)
		m.cp(wire.CP{Type: wire.CFG_REPLY, Attributes: []wire.CPAttribute{
			{Type: wire.INTERNAL_IP4_ADDRESS, Value: c.vip.AsSlice()},
			{Type: wire.INTERNAL_IP4_DNS, Value: c.dns.AsSlice()}}})
		m.sa([]wire.Proposal{chosen})
		m.ts(wire.PayloadTSi, vipTS)
		m.ts(wire.PayloadTSr, c.tsr)
	})
	return req, resp
}

// checkPSKAuth recomputes a shared-key AUTH with the standard library
// alone, because Wireshark cannot check it: RFC 7296 §2.15,
// prf(prf(PSK, "Key Pad for IKEv2"), message | nonce | prf(SK_p, ID body)),
// with PRF_HMAC_SHA2_256.
func checkPSKAuth(t *testing.T, auth, psk, message, nonce, skp, idBody []byte) {
	t.Helper()
	prf := func(k []byte, data ...[]byte) []byte {
		h := hmac.New(sha256.New, k)
		for _, d := range data {
			h.Write(d)
		}
		return h.Sum(nil)
	}
	want := prf(prf(psk, []byte("Key Pad for IKEv2")), message, nonce, prf(skp, idBody))
	if !hmac.Equal(auth, want) {
		t.Fatal("PSK AUTH differs from RFC 7296 §2.15")
	}
}

func TestWireshark(t *testing.T) {
	tshark := findTshark(t)

	dir := t.TempDir()
	psk := randBytes(t, 32)
	ca := caHash(t)
	var frames []frame

	// IKE SA 1: AES-GCM-256 + X25519 on port 500.
	c500, g500 := netip.AddrPortFrom(client, 500), netip.AddrPortFrom(gateway, 500)
	sa1, fs := handshake(t, c500, g500, false, wire.DH_CURVE25519, ca)
	if sa1.encr.ID != wire.ENCR_AES_GCM_16 || sa1.encr.KeyBits != 256 {
		t.Fatalf("SA 1 negotiated ENCR %d/%d, want AES-GCM-16/256", sa1.encr.ID, sa1.encr.KeyBits)
	}
	frames = append(frames, fs...)
	gcm := wire.Transform{Type: wire.TransformENCR, ID: wire.ENCR_AES_GCM_16, KeyLen: 256}
	esnYes := wire.Transform{Type: wire.TransformESN, ID: wire.ESN_YES}
	esnNo := wire.Transform{Type: wire.TransformESN, ID: wire.ESN_NO}
	c1 := child{
		offer:      []wire.Proposal{espProposal(0xc1c10001, gcm, esnYes, esnNo)},
		policy:     []wire.Proposal{{Num: 1, Protocol: wire.ProtoESP, Transforms: []wire.Transform{gcm, esnYes, esnNo}}},
		clientSPI:  0xc1c10001,
		gatewaySPI: 0x9a7e0001,
		vip:        netip.MustParseAddr("10.9.0.2"),
		dns:        netip.MustParseAddr("10.9.0.1"),
		tsr:        wire.TrafficSelector{Type: wire.TS_IPV4_ADDR_RANGE, Start: netip.MustParseAddr("198.51.100.0"), End: netip.MustParseAddr("198.51.100.255"), EndPort: 65535},
		idi:        wire.ID{Type: wire.ID_FQDN, Data: []byte("client.example.com")},
		idr:        wire.ID{Type: wire.ID_IPV4_ADDR, Data: gateway.AsSlice()},
	}
	// The response goes in SKF fragments, so that Wireshark checks
	// AES-GCM's associated data over the fragment numbers too.
	req, resp := ikeAuth(t, sa1, c1, psk, 0, 150)
	frames = append(append(frames, req...), resp...)

	// RFC 6311 after a failover: the gateway (the IKE SA's responder, so
	// no I flag) sends the MID-0 INFORMATIONAL with both sync notifies; the
	// Child SA uses ESN, so the replay counter delta is 8 octets.
	gwSync := wire.MessageIDSync{Nonce: binary.BigEndian.Uint32(randBytes(t, 4)), SendReq: 1 + 32, RecvReq: 2}
	frames = append(frames, sa1.message(t, "MID sync request", wire.INFORMATIONAL, 0, false, false, func(m *msg) {
		m.midSync(gwSync)
		m.replaySync(wire.ReplayCounterSync{Delta: 1<<32 + 0x12345, ESN: true})
	}))
	frames = append(frames, sa1.message(t, "MID sync response", wire.INFORMATIONAL, 0, true, true, func(m *msg) {
		m.midSync(wire.MessageIDSync{Nonce: gwSync.Nonce, SendReq: 2, RecvReq: gwSync.SendReq})
	}))
	frames = append(frames,
		sa1.message(t, "DPD request", wire.INFORMATIONAL, 2, true, false, nil),
		sa1.message(t, "DPD response", wire.INFORMATIONAL, 2, false, true, nil),
		sa1.message(t, "Child delete request", wire.INFORMATIONAL, gwSync.SendReq, false, false, func(m *msg) {
			m.deleteESP(c1.gatewaySPI)
		}),
		sa1.message(t, "Child delete response", wire.INFORMATIONAL, gwSync.SendReq, true, true, func(m *msg) {
			m.deleteESP(c1.clientSPI)
		}),
		sa1.message(t, "IKE delete request", wire.INFORMATIONAL, 3, true, false, func(m *msg) { m.deleteIKE() }),
		sa1.message(t, "IKE delete response", wire.INFORMATIONAL, 3, false, true, nil),
	)

	// IKE SA 2: the client's KE is ecp256, so the gateway picks proposal 2,
	// AES-CBC-256 + HMAC-SHA2-256-128, over port 4500 with the non-ESP
	// marker.
	c4500, g4500 := netip.AddrPortFrom(client, 4500), netip.AddrPortFrom(gateway, 4500)
	sa2, fs := handshake(t, c4500, g4500, true, wire.DH_ECP_256, ca)
	if sa2.encr.ID != wire.ENCR_AES_CBC || sa2.integ == nil || sa2.integ.ID != wire.AUTH_HMAC_SHA2_256_128 {
		t.Fatalf("SA 2 negotiated ENCR %d, want AES-CBC with HMAC-SHA2-256-128", sa2.encr.ID)
	}
	frames = append(frames, fs...)
	cbc := wire.Transform{Type: wire.TransformENCR, ID: wire.ENCR_AES_CBC, KeyLen: 256}
	sha := wire.Transform{Type: wire.TransformINTEG, ID: wire.AUTH_HMAC_SHA2_256_128}
	c2 := child{
		offer:      []wire.Proposal{espProposal(0xc1c10002, cbc, sha, esnNo)},
		policy:     []wire.Proposal{{Num: 1, Protocol: wire.ProtoESP, Transforms: []wire.Transform{cbc, sha, esnNo}}},
		clientSPI:  0xc1c10002,
		gatewaySPI: 0x9a7e0002,
		vip:        netip.MustParseAddr("10.9.0.3"),
		dns:        netip.MustParseAddr("10.9.0.1"),
		tsr:        c1.tsr,
		idi:        wire.ID{Type: wire.ID_RFC822_ADDR, Data: []byte("bob@example.com")},
		idr:        wire.ID{Type: wire.ID_FQDN, Data: []byte("vpn.example.com")},
	}
	req, resp = ikeAuth(t, sa2, c2, psk, 150, 0)
	frames = append(append(frames, req...), resp...)
	frames = append(frames,
		sa2.message(t, "SA 2 DPD request", wire.INFORMATIONAL, 0, false, false, nil),
		sa2.message(t, "SA 2 DPD response", wire.INFORMATIONAL, 0, true, true, nil),
	)

	pcap := dir + "/hike.pcap"
	w, err := newPcap(pcap)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		b := f.msg
		if f.marker {
			b = append([]byte{0, 0, 0, 0}, b...)
		}
		w.udp(f.src, f.dst, b)
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	got := dissect(t, tshark, pcap, wantFields(frames), decryptionTable(sa1), decryptionTable(sa2))
	compare(t, frames, got)
}
