package wireshark_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"testing"

	"github.com/hike-vpn/hike/internal/crypto"
	"github.com/hike-vpn/hike/internal/wire"
)

// A frame is one datagram of the capture and what Wireshark must make of it.
// want maps a display-filter field name to the values the dissector must
// show for it, in tree order; every value is derived from what hike was
// asked to encode, never from parsing hike's output.
type frame struct {
	name     string
	src, dst netip.AddrPort
	marker   bool // prefix the non-ESP marker (RFC 3948 §2.2): UDP port 4500
	msg      []byte
	want     fields
}

type fields map[string][]string

func (f fields) add(name string, vs ...string) { f[name] = append(f[name], vs...) }

func dec[T ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~int](v T) string {
	return strconv.FormatUint(uint64(v), 10)
}

// ikeSA is one IKE SA between the two hosts, with the protection of each
// side: ini seals what the original initiator sends, resp what the
// responder sends.
type ikeSA struct {
	client, gateway netip.AddrPort
	marker          bool
	spii, spir      uint64
	prf             *crypto.PRF
	encr            *crypto.Encr
	integ           *crypto.Integ
	keys            *crypto.IKEKeys
	ini, resp       *crypto.SK
	ni, nr          []byte
	initReq         []byte
	initResp        []byte
}

// msg builds one message and the fields Wireshark must show for it. Plain
// messages add payloads to the outer chain; sealed ones to the chain inside
// SK, after the SK payload itself, which is where the dissector puts the
// decrypted payloads in its tree.
type msg struct {
	w    wire.Builder
	want fields
}

func newMsg() *msg { return &msg{want: fields{}} }

func (m *msg) header(h wire.Header) { m.want.header(h) }

func (f fields) header(h wire.Header) {
	f.add("isakmp.ispi", hex64(h.SPIi))
	f.add("isakmp.rspi", hex64(h.SPIr))
	f.add("isakmp.exchangetype", dec(h.Exchange))
	f.add("isakmp.messageid", hex32(h.MessageID))
	f.add("isakmp.flags", "0x"+hex.EncodeToString([]byte{byte(h.Flags)}))
}

func (m *msg) payload(t wire.PayloadType) { m.want.add("isakmp.typepayload", dec(t)) }

func (m *msg) sa(ps []wire.Proposal) {
	m.payload(wire.PayloadSA)
	m.w.AddSA(ps)
	for _, p := range ps {
		// The dissector lists proposal (2) and transform (3) substructures
		// among the payloads, their IKEv1 payload types.
		m.payload(2)
		m.want.add("isakmp.prop.number", dec(p.Num))
		m.want.add("isakmp.prop.protoid", dec(p.Protocol))
		if len(p.SPI) > 0 {
			m.want.add("isakmp.spi", hex.EncodeToString(p.SPI))
		}
		for _, t := range p.Transforms {
			m.payload(3)
			m.want.add("isakmp.tf.type", dec(t.Type))
			name := map[wire.TransformType]string{
				wire.TransformENCR: "encr", wire.TransformPRF: "prf", wire.TransformINTEG: "integ",
				wire.TransformDH: "dh", wire.TransformESN: "esn",
			}[t.Type]
			m.want.add("isakmp.tf.id."+name, dec(t.ID))
			if t.KeyLen != 0 {
				m.want.add("isakmp.ike2.attr.key_length", dec(t.KeyLen))
			}
		}
	}
}

func (m *msg) ke(group uint16, pub []byte) {
	m.payload(wire.PayloadKE)
	m.w.AddKE(wire.KE{Group: group, Data: pub})
	m.want.add("isakmp.key_exchange.dh_group", dec(group))
	m.want.add("isakmp.key_exchange.data", hex.EncodeToString(pub))
}

func (m *msg) nonce(n []byte) {
	m.payload(wire.PayloadNonce)
	m.w.AddNonce(n)
	m.want.add("isakmp.nonce", hex.EncodeToString(n))
}

func (m *msg) notify(t wire.NotifyType, data []byte) {
	m.payload(wire.PayloadNotify)
	m.w.AddNotify(wire.Notify{Type: t, Data: data})
	m.notified(t, data)
}

// notified records a notify's type and data; tshark shows empty data as
// "<MISSING>".
func (m *msg) notified(t wire.NotifyType, data []byte) {
	m.want.add("isakmp.notify.msgtype", dec(t))
	if len(data) == 0 {
		m.want.add("isakmp.notify.data", "<MISSING>")
	} else {
		m.want.add("isakmp.notify.data", hex.EncodeToString(data))
	}
}

func (m *msg) natDetection(spii, spir uint64, src, dst netip.AddrPort) {
	s, d := natHash(spii, spir, src), natHash(spii, spir, dst)
	m.notify(wire.NAT_DETECTION_SOURCE_IP, s[:])
	m.notify(wire.NAT_DETECTION_DESTINATION_IP, d[:])
}

func (m *msg) sigHashes(algs ...uint16) {
	m.payload(wire.PayloadNotify)
	m.w.AddSignatureHashAlgorithms(algs...)
	var data []byte
	for _, a := range algs {
		data = binary.BigEndian.AppendUint16(data, a)
		m.want.add("isakmp.notify.data.signature_hash_algorithms", dec(a))
	}
	m.notified(wire.SIGNATURE_HASH_ALGORITHMS, data)
}

func (m *msg) certReq(hashes []byte) {
	m.payload(wire.PayloadCERTREQ)
	m.w.AddCertReq(wire.CertReq{Encoding: wire.CertX509Signature, Authorities: hashes})
	m.want.add("isakmp.certreq.type", dec(wire.CertX509Signature))
	for i := 0; i < len(hashes); i += wire.CAHashLen {
		m.want.add("isakmp.ike.certreq.authority", hex.EncodeToString(hashes[i:i+wire.CAHashLen]))
	}
}

// id adds an IDi or IDr payload and returns its body, which AUTH covers.
func (m *msg) id(p wire.PayloadType, id wire.ID) []byte {
	m.payload(p)
	m.w.AddID(p, id)
	m.want.add("isakmp.id.type", dec(id.Type))
	switch id.Type {
	case wire.ID_FQDN:
		m.want.add("isakmp.id.data.fqdn", string(id.Data))
	case wire.ID_RFC822_ADDR:
		m.want.add("isakmp.id.data.user_fqdn", string(id.Data))
	case wire.ID_IPV4_ADDR:
		m.want.add("isakmp.id.data.ipv4_addr", netip.AddrFrom4([4]byte(id.Data)).String())
	}
	return id.Append(nil)
}

func (m *msg) auth(method wire.AuthMethod, data []byte) {
	m.payload(wire.PayloadAUTH)
	m.w.AddAuth(wire.Auth{Method: method, Data: data})
	m.want.add("isakmp.auth.method", dec(method))
	m.want.add("isakmp.auth.data", hex.EncodeToString(data))
}

func (m *msg) cp(c wire.CP) {
	m.payload(wire.PayloadCP)
	m.w.AddCP(c)
	m.want.add("isakmp.cfg.type", dec(c.Type))
	for _, a := range c.Attributes {
		m.want.add("isakmp.cfg.attr.type", dec(a.Type))
		if a.Type == wire.INTERNAL_IP4_ADDRESS && len(a.Value) == 4 {
			m.want.add("isakmp.cfg.attr.internal_ip4_address", netip.AddrFrom4([4]byte(a.Value)).String())
		}
		if a.Type == wire.INTERNAL_IP4_DNS && len(a.Value) == 4 {
			m.want.add("isakmp.cfg.attr.internal_ip4_dns", netip.AddrFrom4([4]byte(a.Value)).String())
		}
	}
}

func (m *msg) ts(p wire.PayloadType, ts ...wire.TrafficSelector) {
	m.payload(p)
	m.w.AddTS(p, ts)
	m.want.add("isakmp.ts.number", dec(len(ts)))
	for _, s := range ts {
		m.want.add("isakmp.ts.type", dec(s.Type))
		m.want.add("isakmp.ts.start_ipv4", s.Start.String())
		m.want.add("isakmp.ts.end_ipv4", s.End.String())
		m.want.add("isakmp.ts.start_port", dec(s.StartPort))
		m.want.add("isakmp.ts.end_port", dec(s.EndPort))
	}
}

func (m *msg) midSync(s wire.MessageIDSync) {
	m.payload(wire.PayloadNotify)
	m.w.AddMessageIDSync(s)
	var data [12]byte
	binary.BigEndian.PutUint32(data[0:], s.Nonce)
	binary.BigEndian.PutUint32(data[4:], s.SendReq)
	binary.BigEndian.PutUint32(data[8:], s.RecvReq)
	m.notified(wire.IKEV2_MESSAGE_ID_SYNC, data[:])
	m.want.add("isakmp.notify.data.ha.nonce_data", hex32(s.Nonce))
	m.want.add("isakmp.notify.data.ha.expected_send_req_message_id", hex32(s.SendReq))
	m.want.add("isakmp.notify.data.ha.expected_recv_req_message_id", hex32(s.RecvReq))
}

func (m *msg) replaySync(r wire.ReplayCounterSync) {
	m.payload(wire.PayloadNotify)
	m.w.AddReplayCounterSync(r)
	// RFC 6311 §6.4: four octets, or eight with extended sequence numbers.
	d := binary.BigEndian.AppendUint64(nil, r.Delta)
	if !r.ESN {
		d = d[4:]
	}
	m.notified(wire.IPSEC_REPLAY_COUNTER_SYNC, d)
	m.want.add("isakmp.notify.data.ha.incoming_ipsec_sa_delta_value", hex.EncodeToString(d))
}

func (m *msg) deleteIKE() {
	m.payload(wire.PayloadDelete)
	m.w.AddDeleteIKE()
	m.want.add("isakmp.delete.protoid", dec(wire.ProtoIKE))
}

func (m *msg) deleteESP(spis ...uint32) {
	m.payload(wire.PayloadDelete)
	m.w.AddDeleteChild(wire.ProtoESP, spis...)
	m.want.add("isakmp.delete.protoid", dec(wire.ProtoESP))
	for _, s := range spis {
		m.want.add("isakmp.delete.spi", hex.EncodeToString(binary.BigEndian.AppendUint32(nil, s)))
	}
}

// hex32 is how tshark prints the 32-bit fields it declares hexadecimal
// (Message ID, the RFC 6311 counters).
func hex32(v uint32) string { return fmt.Sprintf("0x%08x", v) }

func hex64(v uint64) string { return hex.EncodeToString(binary.BigEndian.AppendUint64(nil, v)) }

// natHash is the NAT_DETECTION_*_IP data of RFC 7296 §2.23:
// SHA-1(SPIi | SPIr | IP address | port).
func natHash(spii, spir uint64, ap netip.AddrPort) [sha1.Size]byte {
	b := binary.BigEndian.AppendUint64(nil, spii)
	b = binary.BigEndian.AppendUint64(b, spir)
	b = append(b, ap.Addr().AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, ap.Port())
	return sha1.Sum(b)
}

func randBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func randSPI(t *testing.T) uint64 { return binary.BigEndian.Uint64(randBytes(t, 8)) | 1 }

// Proposals the client offers for every IKE SA, in hike's preference order
// (hike's default IKE proposals): aes256gcm16-prfsha256-x25519 and
// aes256-sha256-ecp256.
func ikeProposals() []wire.Proposal {
	return []wire.Proposal{
		{Num: 1, Protocol: wire.ProtoIKE, Transforms: []wire.Transform{
			{Type: wire.TransformENCR, ID: wire.ENCR_AES_GCM_16, KeyLen: 256},
			{Type: wire.TransformPRF, ID: wire.PRF_HMAC_SHA2_256},
			{Type: wire.TransformDH, ID: wire.DH_CURVE25519},
		}},
		{Num: 2, Protocol: wire.ProtoIKE, Transforms: []wire.Transform{
			{Type: wire.TransformENCR, ID: wire.ENCR_AES_CBC, KeyLen: 256},
			{Type: wire.TransformPRF, ID: wire.PRF_HMAC_SHA2_256},
			{Type: wire.TransformINTEG, ID: wire.AUTH_HMAC_SHA2_256_128},
			{Type: wire.TransformDH, ID: wire.DH_ECP_256},
		}},
	}
}

var sigHashes = []uint16{wire.HashSHA2_256, wire.HashSHA2_384, wire.HashSHA2_512, wire.HashIdentity}

// handshake runs IKE_SA_INIT between client and gateway with the client's
// KE in group, lets crypto.Select pick the proposal, and derives the keys
// on both sides independently.
func handshake(t *testing.T, client, gateway netip.AddrPort, marker bool, group uint16, caHash []byte) (*ikeSA, []frame) {
	t.Helper()
	sa := &ikeSA{client: client, gateway: gateway, marker: marker, spii: randSPI(t), spir: randSPI(t)}
	g, err := crypto.LookupGroup(group)
	if err != nil {
		t.Fatal(err)
	}
	ckp, err := g.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sa.ni, sa.nr = randBytes(t, 32), randBytes(t, 32)

	// Request: hike's initiator sends exactly this payload sequence
	// (ike.initExchange.build).
	offer := ikeProposals()
	req := newMsg()
	h := wire.Header{SPIi: sa.spii, Exchange: wire.IKE_SA_INIT, Flags: wire.FlagInitiator}
	req.header(h)
	req.w.Reset(nil, h)
	req.sa(offer)
	req.ke(group, ckp.Public())
	req.nonce(sa.ni)
	req.natDetection(sa.spii, 0, client, gateway)
	req.notify(wire.IKEV2_FRAGMENTATION_SUPPORTED, nil)
	req.sigHashes(sigHashes...)
	sa.initReq = req.w.Finish()

	// The gateway parses the request with hike's codec and negotiates.
	var pm wire.Message
	if err := pm.Parse(sa.initReq); err != nil {
		t.Fatal(err)
	}
	sap, _ := pm.Find(wire.PayloadSA)
	offered, err := wire.ParseSA(nil, sap.Body)
	if err != nil {
		t.Fatal(err)
	}
	kep, _ := pm.Find(wire.PayloadKE)
	ke, err := wire.ParseKE(kep.Body)
	if err != nil {
		t.Fatal(err)
	}
	sel, err := crypto.Select(offered, ikeProposals(), wire.ProtoIKE, ke.Group)
	if err != nil {
		t.Fatal(err)
	}
	gkp, err := sel.DH.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sa.prf, sa.encr, sa.integ = sel.PRF, sel.Encr, sel.Integ

	resp := newMsg()
	h = wire.Header{SPIi: sa.spii, SPIr: sa.spir, Exchange: wire.IKE_SA_INIT, Flags: wire.FlagResponse}
	resp.header(h)
	resp.w.Reset(nil, h)
	resp.sa([]wire.Proposal{sel.Proposal})
	resp.ke(sel.DH.ID(), gkp.Public())
	resp.nonce(sa.nr)
	resp.natDetection(sa.spii, sa.spir, gateway, client)
	resp.notify(wire.IKEV2_FRAGMENTATION_SUPPORTED, nil)
	resp.sigHashes(sigHashes...)
	resp.certReq(caHash)
	sa.initResp = resp.w.Finish()

	// Each side computes g^ir from the other's KE payload.
	girG, err := gkp.SharedSecret(ke.Data)
	if err != nil {
		t.Fatal(err)
	}
	girC, err := ckp.SharedSecret(gkp.Public())
	if err != nil {
		t.Fatal(err)
	}
	if string(girC) != string(girG) {
		t.Fatal("Diffie-Hellman shared secrets differ")
	}
	sa.keys, err = crypto.NewIKEKeys(sa.prf, sa.encr, sa.integ, girG, sa.ni, sa.nr, sa.spii, sa.spir)
	if err != nil {
		t.Fatal(err)
	}
	if sa.ini, err = crypto.NewSK(sa.encr, sa.integ, sa.keys, true); err != nil {
		t.Fatal(err)
	}
	if sa.resp, err = crypto.NewSK(sa.encr, sa.integ, sa.keys, false); err != nil {
		t.Fatal(err)
	}
	return sa, []frame{
		{name: "IKE_SA_INIT request", src: client, dst: gateway, marker: marker, msg: sa.initReq, want: req.want},
		{name: "IKE_SA_INIT response", src: gateway, dst: client, marker: marker, msg: sa.initResp, want: resp.want},
	}
}

// build lays out one protected message of sa: its header and inner chain.
// fromClient picks the sender (the client is the original initiator and
// sets the I flag in all its messages); fill adds the inner payloads.
func (sa *ikeSA) build(ex wire.ExchangeType, mid uint32, fromClient, response bool, fill func(m *msg)) (wire.Header, *msg, []byte) {
	h := wire.Header{SPIi: sa.spii, SPIr: sa.spir, Exchange: ex, MessageID: mid}
	if fromClient {
		h.Flags |= wire.FlagInitiator
	}
	if response {
		h.Flags |= wire.FlagResponse
	}
	m := newMsg()
	m.header(h)
	m.w.ResetChain(nil)
	if fill != nil {
		fill(m)
	}
	return h, m, m.w.Finish()
}

// sides returns the sender's and the receiver's SK and addresses.
func (sa *ikeSA) sides(fromClient bool) (out, in *crypto.SK, src, dst netip.AddrPort) {
	if fromClient {
		return sa.ini, sa.resp, sa.client, sa.gateway
	}
	return sa.resp, sa.ini, sa.gateway, sa.client
}

// message seals one message of sa in an SK payload and checks that the
// receiving side opens it with hike's own code.
func (sa *ikeSA) message(t *testing.T, name string, ex wire.ExchangeType, mid uint32, fromClient, response bool, fill func(m *msg)) frame {
	t.Helper()
	h, m, inner := sa.build(ex, mid, fromClient, response, fill)
	// The SK payload comes first in the dissection tree, the decrypted
	// payloads under it.
	m.want["isakmp.typepayload"] = append([]string{dec(wire.PayloadSK)}, m.want["isakmp.typepayload"]...)
	out, peer, src, dst := sa.sides(fromClient)
	msg, err := out.Seal(nil, h, m.w.First(), inner)
	if err != nil {
		t.Fatal(err)
	}
	var pm wire.Message
	if err := pm.Parse(msg); err != nil {
		t.Fatal(err)
	}
	plain, first, err := peer.Open(nil, msg, pm.Payloads[len(pm.Payloads)-1])
	if err != nil || first != m.w.First() || string(plain) != string(inner) {
		t.Fatalf("%s: hike cannot open its own message (%v)", name, err)
	}
	return frame{name: name, src: src, dst: dst, marker: sa.marker, msg: msg, want: m.want}
}

// protect seals one message of sa, in SKF fragments of at most maxLen
// octets if maxLen > 0, else in one SK payload.
func (sa *ikeSA) protect(t *testing.T, name string, ex wire.ExchangeType, mid uint32, fromClient, response bool, maxLen int, fill func(m *msg)) []frame {
	t.Helper()
	if maxLen > 0 {
		return sa.fragments(t, name, ex, mid, fromClient, response, maxLen, fill)
	}
	return []frame{sa.message(t, name, ex, mid, fromClient, response, fill)}
}

// fragments seals one message of sa in SKF fragments of at most maxLen
// octets (RFC 7383) and checks that hike's reassembler recovers it.
func (sa *ikeSA) fragments(t *testing.T, name string, ex wire.ExchangeType, mid uint32, fromClient, response bool, maxLen int, fill func(m *msg)) []frame {
	t.Helper()
	h, m, inner := sa.build(ex, mid, fromClient, response, fill)
	out, peer, src, dst := sa.sides(fromClient)
	_, msgs, err := out.SealFragments(nil, nil, h, m.w.First(), inner, maxLen)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) < 2 {
		t.Fatalf("%s: %d fragments, want several", name, len(msgs))
	}
	var r crypto.Reassembler
	var frames []frame
	for i, b := range msgs {
		var pm wire.Message
		if err := pm.Parse(b); err != nil {
			t.Fatal(err)
		}
		plain, first, done, err := r.Add(peer, b, pm.Payloads[len(pm.Payloads)-1])
		if err != nil || done != (i == len(msgs)-1) || (done && (first != m.w.First() || string(plain) != string(inner))) {
			t.Fatalf("%s: hike cannot reassemble its own fragments (%v)", name, err)
		}
		// Wireshark decrypts every fragment and, with the last one,
		// dissects the reassembled inner chain in that frame.
		want := fields{}
		if done {
			want = m.want
			want.add("isakmp.fragment.count", dec(len(msgs)))
			want.add("isakmp.reassembled.length", dec(len(inner)))
		} else {
			want.header(h)
		}
		want["isakmp.typepayload"] = append([]string{dec(wire.PayloadSKF)}, want["isakmp.typepayload"]...)
		want.add("isakmp.frag.number", dec(i+1))
		want.add("isakmp.frag.total", dec(len(msgs)))
		frames = append(frames, frame{name: fmt.Sprintf("%s fragment %d/%d", name, i+1, len(msgs)),
			src: src, dst: dst, marker: sa.marker, msg: b, want: want})
	}
	return frames
}

// caHash returns the CERTREQ entry for a fresh CA key: the SHA-1 of its
// SubjectPublicKeyInfo (RFC 7296 §3.7).
func caHash(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	h := sha1.Sum(spki)
	return h[:]
}
