package interop

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/netlab/labtest"
	"github.com/hike-vpn/hike/internal/netlab/swan"
	"github.com/hike-vpn/hike/internal/wire"
)

// datagram is one UDP payload for a destination port of the gateway.
type datagram struct {
	port uint16
	data []byte
}

// wireSeeds builds messages of the same shapes as the wire package's fuzz
// seeds: a full IKE_SA_INIT request, IKE_AUTH in the clear and inside a fake
// SK payload, RFC 6311 sync and a kitchen-sink INFORMATIONAL, an empty DPD
// and an SKF fragment. spiI/spiR go into the messages that belong to an
// existing SA.
func wireSeeds(spiI, spiR uint64) [][]byte {
	var out [][]byte
	{
		var w wire.Builder
		w.Reset(nil, wire.Header{SPIi: 0x1122334455667788, Exchange: wire.IKE_SA_INIT, Flags: wire.FlagInitiator})
		w.AddSA([]wire.Proposal{{Num: 1, Protocol: wire.ProtoIKE, Transforms: []wire.Transform{
			{Type: wire.TransformENCR, ID: wire.ENCR_AES_GCM_16, KeyLen: 256},
			{Type: wire.TransformPRF, ID: wire.PRF_HMAC_SHA2_256},
			{Type: wire.TransformDH, ID: wire.DH_CURVE25519},
		}}})
		w.AddKE(wire.KE{Group: wire.DH_CURVE25519, Data: bytes.Repeat([]byte{0x25}, 32)})
		w.AddNonce(bytes.Repeat([]byte{0x4e}, 32))
		w.AddNotify(wire.Notify{Type: wire.NAT_DETECTION_SOURCE_IP, Data: bytes.Repeat([]byte{0x5a}, 20)})
		w.AddNotify(wire.Notify{Type: wire.NAT_DETECTION_DESTINATION_IP, Data: bytes.Repeat([]byte{0xda}, 20)})
		w.AddSignatureHashAlgorithms(wire.HashSHA2_256, wire.HashIdentity)
		w.AddNotify(wire.Notify{Type: wire.IKEV2_FRAGMENTATION_SUPPORTED})
		w.AddVendorID([]byte("robustness"))
		out = append(out, w.Finish())
	}
	authInner := func(w *wire.Builder) {
		w.AddID(wire.PayloadIDi, wire.ID{Type: wire.ID_FQDN, Data: []byte("intruder.example")})
		w.AddAuth(wire.Auth{Method: wire.AuthSharedKey, Data: bytes.Repeat([]byte{0xa7}, 32)})
		w.AddNotify(wire.Notify{Type: wire.INITIAL_CONTACT})
		w.AddCP(wire.CP{Type: wire.CFG_REQUEST, Attributes: []wire.CPAttribute{{Type: wire.INTERNAL_IP4_ADDRESS}}})
		w.AddSA([]wire.Proposal{{Num: 1, Protocol: wire.ProtoESP, SPI: []byte{0xc1, 0, 0, 1}, Transforms: []wire.Transform{
			{Type: wire.TransformENCR, ID: wire.ENCR_AES_GCM_16, KeyLen: 256}, {Type: wire.TransformESN, ID: wire.ESN_NO}}}})
		ts := []wire.TrafficSelector{{Type: wire.TS_IPV4_ADDR_RANGE, EndPort: 0xffff,
			Start: netip.AddrFrom4([4]byte{}), End: netip.AddrFrom4([4]byte{255, 255, 255, 255})}}
		w.AddTS(wire.PayloadTSi, ts)
		w.AddTS(wire.PayloadTSr, ts)
	}
	for _, ids := range [][2]uint64{{1, 2}, {spiI, spiR}} {
		h := wire.Header{SPIi: ids[0], SPIr: ids[1], Exchange: wire.IKE_AUTH, Flags: wire.FlagInitiator, MessageID: 1}
		var w wire.Builder
		w.Reset(nil, h)
		authInner(&w)
		out = append(out, w.Finish())

		var c wire.Builder
		c.ResetChain(nil)
		authInner(&c)
		first, chain := c.First(), c.Finish()
		w.Reset(nil, h)
		b := append(w.StartSK(first), make([]byte, 16)...)
		w.End(append(append(b, chain...), make([]byte, 16)...))
		out = append(out, w.Finish())

		w.Reset(nil, wire.Header{SPIi: ids[0], SPIr: ids[1], Exchange: wire.INFORMATIONAL, Flags: wire.FlagInitiator})
		w.AddMessageIDSync(wire.MessageIDSync{Nonce: 0x01020304, SendReq: 100, RecvReq: 50})
		w.AddReplayCounterSync(wire.ReplayCounterSync{Delta: 1 << 30})
		out = append(out, w.Finish())

		w.Reset(nil, wire.Header{SPIi: ids[0], SPIr: ids[1], Exchange: wire.INFORMATIONAL, MessageID: 7})
		w.AddDeleteChild(wire.ProtoESP, 0xc1000001, 0xc1000002)
		w.AddDeleteIKE()
		w.AddNotify(wire.Notify{Type: wire.COOKIE, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8}})
		w.AddNotifyUint(wire.INVALID_KE_PAYLOAD, 2, uint64(wire.DH_ECP_256))
		w.AddRekeySA(wire.ProtoESP, 0xc1000001)
		w.AddCertReq(wire.CertReq{Encoding: wire.CertX509Signature, Authorities: make([]byte, 20)})
		w.AddCert(wire.Cert{Encoding: wire.CertX509Signature, Data: []byte{0x30, 0}})
		w.AddEAP(wire.EAP{Code: wire.EAPResponse, Identifier: 1, Type: 1, Data: []byte("me")})
		out = append(out, w.Finish())

		for mid := uint32(0); mid < 8; mid++ {
			for _, fl := range []wire.Flags{wire.FlagInitiator, wire.FlagResponse, wire.FlagInitiator | wire.FlagResponse} {
				w.Reset(nil, wire.Header{SPIi: ids[0], SPIr: ids[1], Exchange: wire.INFORMATIONAL, Flags: fl, MessageID: mid})
				w.End(append(w.StartSK(wire.PayloadNone), make([]byte, 32)...))
				out = append(out, w.Finish())
			}
		}

		w.Reset(nil, wire.Header{SPIi: ids[0], SPIr: ids[1], Exchange: wire.IKE_AUTH, Flags: wire.FlagInitiator, MessageID: 1})
		w.End(append(w.StartSKF(wire.PayloadIDi, 1, 2), make([]byte, 48)...))
		out = append(out, w.Finish())

		// Unprotected requests under each Message ID, the expected one
		// included: nothing in them is authenticated, so none may be
		// answered, move the peer or consume a Message ID.
		for mid := uint32(0); mid < 8; mid++ {
			w.Reset(nil, wire.Header{SPIi: ids[0], SPIr: ids[1], Exchange: wire.INFORMATIONAL, Flags: wire.FlagInitiator, MessageID: mid})
			w.AddDeleteIKE()
			out = append(out, w.Finish())
		}
	}
	return out
}

// fuzzCorpus reads the wire package's checked-in fuzz corpus (files in the
// "go test fuzz v1" format holding one []byte each).
func fuzzCorpus(t *testing.T) [][]byte {
	t.Helper()
	files, err := filepath.Glob("../../internal/wire/testdata/fuzz/*/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fuzz corpus found: %v", err)
	}
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if s, ok := strings.CutPrefix(line, "[]byte("); ok {
				v, err := strconv.Unquote(strings.TrimSuffix(s, ")"))
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				out = append(out, []byte(v))
			}
		}
	}
	return out
}

// garbage returns the flood of TestRobustGarbage: the seeds and corpus as
// they are and mutated, random IKE-shaped messages, random bytes, and on
// 4500 the same behind the non-ESP marker plus random ESP (some under the
// SA's real inbound SPI) and keepalives.
func garbage(t *testing.T, rng *mrand.Rand, spiI, spiR uint64, espSPI uint32, random int) []datagram {
	msgs := append(wireSeeds(spiI, spiR), fuzzCorpus(t)...)
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	mutate := func(m []byte) []byte {
		m = bytes.Clone(m)
		for range 1 + rng.IntN(4) {
			if len(m) > 0 {
				m[rng.IntN(len(m))] = byte(rng.Uint32())
			}
		}
		if rng.IntN(4) == 0 && len(m) > 0 {
			m = m[:rng.IntN(len(m))]
		}
		return m
	}
	ikeShaped := func() []byte {
		m := randBytes(wire.HeaderLen + rng.IntN(400))
		if rng.IntN(2) == 0 {
			binary.BigEndian.PutUint64(m[0:], spiI)
			binary.BigEndian.PutUint64(m[8:], spiR)
		}
		m[17] = wire.Version
		m[18] = byte(34 + rng.IntN(10))
		binary.BigEndian.PutUint32(m[24:], uint32(len(m)))
		return m
	}
	var out []datagram
	for _, port := range []uint16{500, 4500} {
		var marker []byte
		if port == 4500 {
			marker = make([]byte, 4)
		}
		add := func(m []byte) { out = append(out, datagram{port, append(bytes.Clone(marker), m...)}) }
		for _, m := range msgs {
			add(m)
			for range 10 {
				add(mutate(m))
			}
		}
		for range random {
			switch rng.IntN(3) {
			case 0:
				add(ikeShaped())
			case 1:
				add(randBytes(rng.IntN(600)))
			default:
				out = append(out, datagram{port, randBytes(rng.IntN(600))}) // no marker either way
			}
		}
	}
	// ESP-in-UDP: random SPIs and the SA's own, with bad ICVs; keepalives.
	for range random / 2 {
		spi := rng.Uint32() | 1
		if rng.IntN(2) == 0 {
			spi = espSPI
		}
		p := binary.BigEndian.AppendUint32(nil, spi)
		p = binary.BigEndian.AppendUint32(p, rng.Uint32())
		out = append(out, datagram{4500, append(p, randBytes(rng.IntN(300))...)})
	}
	for range 50 {
		out = append(out, datagram{4500, []byte{0xff}})
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// sendDatagrams sends ds from c (its sockets bound to ports 500 and 4500,
// as a peer's would be) to dst, paced so that the flood takes about a
// second per few thousand datagrams.
func (e *env) sendDatagrams(c *client, dst string, ds []datagram) {
	e.sendDatagramsFrom(c, netip.AddrPortFrom(c.outer, 0), dst, ds)
}

// sendDatagramsFrom is sendDatagrams with the source forged: raw IPv4
// packets claim to come from src (port 0: 500 or 4500 like the
// destination).
func (e *env) sendDatagramsFrom(c *client, src netip.AddrPort, dst string, ds []datagram) {
	e.t.Helper()
	var buf bytes.Buffer
	for _, d := range ds {
		binary.Write(&buf, binary.BigEndian, d.port)
		binary.Write(&buf, binary.BigEndian, uint16(len(d.data)))
		buf.Write(d.data)
	}
	path := filepath.Join(e.dir, "flood.bin")
	must(e.t, os.WriteFile(path, buf.Bytes(), 0o600))
	spoof := "0"
	if src.Addr() != c.outer {
		spoof = "1"
	}
	out, err := c.ns.Run("python3", "-c", `
import socket, struct, sys, time
data = open(sys.argv[1], "rb").read()
dst, src, sport, spoof = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
socks = {}
if spoof:
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    def send(port, b):
        sp = sport or port
        udp = struct.pack(">HHHH", sp, port, 8 + len(b), 0) + b
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
        raw.sendto(ip + udp, (dst, 0))
else:
    for p in (500, 4500):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, p))
        socks[p] = s
    def send(port, b):
        socks[port].sendto(b, (dst, port))
i = n = 0
while i < len(data):
    port, ln = struct.unpack(">HH", data[i:i+4]); i += 4
    send(port, data[i:i+ln]); i += ln; n += 1
    if n % 50 == 0: time.sleep(0.01)
print(n)
`, path, dst, src.Addr().String(), strconv.Itoa(int(src.Port())), spoof)
	if err != nil || strings.TrimSpace(string(out)) != strconv.Itoa(len(ds)) {
		e.t.Fatalf("sending datagrams: %v: %s", err, out)
	}
}

// robustEnv is hike with one strongSwan client whose SA is up, and the
// SPIs that garbage aimed at that SA uses; swanExtra goes into the
// client's connection.
func robustEnv(t *testing.T, swanExtra string) (e *env, c *client, d *swan.Daemon, before swan.IKESA, spiI, spiR, espSPI uint64) {
	e = newEnv(t, 2)
	e.dpd = "2s"
	e.startHike(hikePSKConf)
	c = e.clients[0]
	d = e.startSwan(1, swanConf(c, "aes256gcm16-prfsha256-x25519", "aes256gcm16", swanExtra))
	if err := d.Initiate("net"); err != nil {
		t.Fatal(err)
	}
	sas, err := d.SAs()
	if err != nil || len(sas) != 1 || len(sas[0].Children) != 1 {
		t.Fatalf("%+v %v", sas, err)
	}
	before = sas[0]
	spiI, err1 := strconv.ParseUint(before.SPIi, 16, 64)
	spiR, err2 := strconv.ParseUint(before.SPIr, 16, 64)
	espSPI, err3 := strconv.ParseUint(before.Children[0].SPIOut, 16, 32)
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatalf("SPIs of %+v: %v", before, err)
	}
	return e, c, d, before, spiI, spiR, espSPI
}

// TestRobustGarbage: a running hike with an established strongSwan SA is
// fed, from another host on the link, the wire fuzz seeds and corpus (as
// they are, mutated, and under the SA's real SPIs) and thousands of random
// datagrams on 500 and 4500, with and without the non-ESP marker, plus ESP
// with bad ICVs under the Child SA's real SPI. hike keeps running, the SA
// keeps its SPIs, DPD keeps being answered, traffic still flows, and hike's
// logs about the garbage stay rate-limited.
func TestRobustGarbage(t *testing.T) {
	e, c, d, before, spiI, spiR, espSPI := robustEnv(t, "")
	e.ping(c, gwInner, 2)

	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 7))
	ds := garbage(t, rng, spiI, spiR, uint32(espSPI), 1500)
	logBefore := strings.Count(e.hike.Out.String(), "\n")
	dpdBefore := strings.Count(d.Log(), "parsed INFORMATIONAL request")
	start := time.Now()
	e.sendDatagrams(e.clients[1], gwAddr, ds)
	flood := time.Since(start)
	time.Sleep(500 * time.Millisecond)
	if e.hike.Exited() {
		t.Fatalf("hike died under the flood")
	}
	if out := e.hike.Out.String(); strings.Contains(out, "to="+e.clients[1].outer.String()) {
		t.Fatalf("garbage moved the SA to the sender's address:\n%s", grepLines(out, "peer moved"))
	}
	logLines := strings.Count(e.hike.Out.String(), "\n") - logBefore
	t.Logf("hike during the flood:\n%s", tailLines(e.hike.Out.String(), logLines))

	// The SA survives: hike's DPD is still answered, the SPIs are the same,
	// traffic flows, and hike still lists it.
	waitFor(t, 8*time.Second, "hike's DPD answered after the flood", func() bool {
		return strings.Count(d.Log(), "parsed INFORMATIONAL request") > dpdBefore+1
	})
	sas, err := d.SAs()
	if err != nil || len(sas) != 1 || sas[0].SPIi != before.SPIi || sas[0].SPIr != before.SPIr ||
		sas[0].State != "ESTABLISHED" || len(sas[0].Children) != 1 || sas[0].Children[0].SPIOut != before.Children[0].SPIOut {
		t.Fatalf("strongSwan's SA changed: %+v %v (was %+v)", sas, err, before)
	}
	e.ping(c, gwInner, 3)
	e.tcpTransfer(c, 1<<20)
	if hs := e.hikeSAs(); len(hs) == 0 {
		t.Fatal("hike lists no SA")
	}
	if out := e.hike.Out.String(); strings.Contains(out, "panic") || strings.Contains(out, `msg="peer not responding"`) ||
		strings.Contains(out, `msg="IKE SA removed"`) ||
		strings.Contains(out, "to="+e.clients[1].outer.String()) {
		t.Fatalf("hike:\n%s", tailLines(out, 40))
	}
	// One log line per bad datagram would be an amplifier for whoever sends
	// them; hike rate-limits (20 lines a second).
	if max := int(flood.Seconds()+2) * 25; logLines > max {
		t.Fatalf("hike logged %d lines for %d datagrams in %v (more than %d)", logLines, len(ds), flood, max)
	}
	t.Logf("%d datagrams in %v; hike logged %d lines meanwhile", len(ds), flood.Round(time.Millisecond), logLines)
}

// TestRobustSpoofedGarbage: the same garbage, forged to come from the
// established peer's own address and NAT-T port (another host on the link
// sends raw packets), so that hike cannot tell it apart by address. None of
// it authenticates, so none of it may consume a Message ID or change the
// SA: afterwards strongSwan rekeys its Child SA (its next request must be
// the one hike expects), DPD runs both ways, and traffic flows.
func TestRobustSpoofedGarbage(t *testing.T) {
	e, c, d, before, spiI, spiR, espSPI := robustEnv(t, "dpd_delay = 3s")
	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 11))
	ds := garbage(t, rng, spiI, spiR, uint32(espSPI), 500)
	logBefore := len(e.hike.Out.String())
	e.sendDatagramsFrom(e.clients[1], netip.AddrPortFrom(c.outer, 4500), gwAddr, ds)
	time.Sleep(300 * time.Millisecond)
	if e.hike.Exited() {
		t.Fatal("hike died under the flood")
	}
	// The (rate-limited) complaints name the forged source or the SA.
	if during := e.hike.Out.String()[logBefore:]; !strings.Contains(during, "remote="+c.outer.String()+":") &&
		!strings.Contains(during, "sa=") {
		t.Fatalf("hike logged nothing about the forged packets; did they arrive?\n%s", during)
	}

	if _, err := d.Swanctl("--rekey", "--child", "net"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "strongSwan's Child SA rekey", func() bool {
		return strings.Contains(d.Log(), "CHILD_SA net{2} established")
	})
	// hike probes first (2 s); then it is stopped so that charon probes
	// (3 s) and gets its answer once hike runs again.
	dpd := strings.Count(d.Log(), "parsed INFORMATIONAL request")
	waitFor(t, 8*time.Second, "hike's DPD answered", func() bool {
		return strings.Count(d.Log(), "parsed INFORMATIONAL request") > dpd
	})
	must(t, e.hike.Signal(syscall.SIGSTOP))
	waitFor(t, 8*time.Second, "charon to probe", func() bool { return strings.Contains(d.Log(), "sending DPD request") })
	must(t, e.hike.Signal(syscall.SIGCONT))
	waitFor(t, 8*time.Second, "charon's DPD answered", func() bool {
		return strings.Contains(d.Log(), "parsed INFORMATIONAL response")
	})
	sas, err := d.SAs()
	if err != nil || len(sas) != 1 || sas[0].SPIi != before.SPIi || sas[0].SPIr != before.SPIr || sas[0].State != "ESTABLISHED" {
		t.Fatalf("strongSwan's IKE SA changed: %+v %v (was %+v)", sas, err, before)
	}
	e.ping(c, gwInner, 3)
	if strings.Contains(d.Log(), "retransmit") || strings.Contains(e.hike.Out.String(), `msg="peer not responding"`) {
		t.Fatalf("an exchange needed retransmission after the flood:\n%s", grepLines(d.Log(), "retransmit"))
	}
	t.Logf("%d forged datagrams from %s:4500", len(ds), c.outer)
}

// pcapPackets returns the UDP datagrams (source, destination, payload) of an
// Ethernet pcap file written by tcpdump.
func pcapPackets(t *testing.T, path string) (out []struct {
	src, dst netip.AddrPort
	data     []byte
}) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 24 {
		t.Fatalf("pcap %s: %v (%d bytes)", path, err, len(b))
	}
	var bo binary.ByteOrder = binary.LittleEndian
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
	default:
		bo = binary.BigEndian
	}
	if lt := bo.Uint32(b[20:]); lt != 1 {
		t.Fatalf("pcap link type %d, want Ethernet", lt)
	}
	for b = b[24:]; len(b) >= 16; {
		n := int(bo.Uint32(b[8:]))
		if len(b) < 16+n {
			break
		}
		f := b[16 : 16+n]
		b = b[16+n:]
		if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
			continue
		}
		ip := f[14:]
		ihl := int(ip[0]&0xf) * 4
		if ip[9] != syscall.IPPROTO_UDP || len(ip) < ihl+8 {
			continue
		}
		udp := ip[ihl:]
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), binary.BigEndian.Uint16(udp[0:]))
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), binary.BigEndian.Uint16(udp[2:]))
		out = append(out, struct {
			src, dst netip.AddrPort
			data     []byte
		}{src, dst, udp[8:]})
	}
	return out
}

// TestRetransmitCachedResponse: a request from strongSwan is answered by
// hike, but the answer is dropped in front of charon (nftables), so charon
// retransmits the request; hike must answer the retransmission from its
// response cache with the very same octets (a fresh response would carry a
// new IV) and must not process the request twice. tcpdump in the gateway
// captures both answers. Two requests: a DPD (empty INFORMATIONAL) and a
// Child SA rekey (CREATE_CHILD_SA), whose second processing would create a
// second Child SA.
func TestRetransmitCachedResponse(t *testing.T) {
	requireTool(t, "tcpdump")
	for _, tc := range []struct {
		name     string
		exchange wire.ExchangeType
		extra    string // strongSwan connection options
		trigger  func(d *swan.Daemon) error
	}{
		{"dpd", wire.INFORMATIONAL, "dpd_delay = 1s", nil},
		{"child-rekey", wire.CREATE_CHILD_SA, "", func(d *swan.Daemon) error {
			_, err := d.Swanctl("--rekey", "--child", "net")
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1)
			e.startHike(hikePSKConf)
			c := e.clients[0]
			pcap := filepath.Join(e.dir, "ike.pcap")
			td, err := e.gw.Start("tcpdump", "", "tcpdump", "-i", "br0", "-n", "-U", "-w", pcap, "udp port 4500")
			must(t, err)
			waitFor(t, 5*time.Second, "tcpdump to listen", func() bool { return strings.Contains(td.Out.String(), "listening on") })

			// Drop hike's responses of the exchange (flags exactly R: hike
			// is the responder of the IKE SA): the UDP payload is
			// marker(4) SPIs(16) next(1) version(1) exchange(1) flags(1), so
			// after the 8-octet UDP header the exchange type is at bit 240
			// and the flags at bit 248.
			rules := fmt.Sprintf(`table inet ikedrop {
	chain in {
		type filter hook input priority filter; policy accept;
		udp sport 4500 @th,64,32 0 @th,240,8 %d @th,248,8 0x20 counter drop
	}
}
`, tc.exchange)
			d, err := swan.Start(c.ns, filepath.Join(e.dir, "swan1"),
				swanConf(c, "aes256gcm16-prfsha256-x25519", "aes256gcm16", tc.extra),
				swan.Options{LibIPsec: true, Extra: "retransmit_timeout = 1.0\n    retransmit_base = 1.4"})
			must(t, err)
			c.swan = d
			if err := d.Initiate("net"); err != nil {
				t.Fatal(err)
			}
			sas, err := d.SAs()
			if err != nil || len(sas) != 1 || len(sas[0].Children) != 1 {
				t.Fatalf("%+v %v", sas, err)
			}
			oldSPI := sas[0].Children[0].SPIIn
			if out, err := c.ns.Run("sh", "-c", "printf '%s' \"$1\" | nft -f -", "sh", rules); err != nil {
				t.Fatalf("nft: %v: %s", err, out)
			}
			if tc.trigger != nil {
				must(t, tc.trigger(d))
			}
			re := regexp.MustCompile(`retransmit 1 of request with message ID (\d+)`)
			var mid uint32
			waitFor(t, 10*time.Second, "charon to retransmit", func() bool {
				m := re.FindStringSubmatch(d.Log())
				if m != nil {
					v, _ := strconv.ParseUint(m[1], 10, 32)
					mid = uint32(v)
				}
				return m != nil
			})
			if out, err := c.ns.Run("nft", "delete", "table", "inet", "ikedrop"); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			waitFor(t, 10*time.Second, "charon to get hike's answer", func() bool {
				return strings.Contains(d.Log(), fmt.Sprintf("parsed %s response %d", tc.exchange, mid))
			})
			time.Sleep(200 * time.Millisecond)
			td.Stop(3 * time.Second)

			// The requests with that Message ID and hike's answers to them.
			var reqs, resps [][]byte
			for _, p := range pcapPackets(t, pcap) {
				m := p.data
				if len(m) < 4+wire.HeaderLen || binary.BigEndian.Uint32(m) != 0 {
					continue
				}
				m = m[4:]
				if wire.ExchangeType(m[18]) != tc.exchange || binary.BigEndian.Uint32(m[20:]) != mid {
					continue
				}
				if p.src.Addr() == netip.MustParseAddr(gwAddr) {
					resps = append(resps, m)
				} else {
					reqs = append(reqs, m)
				}
			}
			if len(reqs) < 2 || len(resps) < 2 {
				t.Fatalf("captured %d requests and %d responses with Message ID %d, want at least 2 of each", len(reqs), len(resps), mid)
			}
			for i := range reqs[1:] {
				if !bytes.Equal(reqs[i+1], reqs[0]) {
					t.Fatalf("charon's retransmission %d differs from its request", i+1)
				}
			}
			for i := range resps[1:] {
				if !bytes.Equal(resps[i+1], resps[0]) {
					t.Fatalf("hike's answer %d to the retransmission differs from its first answer:\n%x\n%x", i+1, resps[0], resps[i+1])
				}
			}
			// Before the fix that this test came with, hike took the
			// retransmission for a replay of an old Message ID and dropped
			// it, so charon never got an answer.
			if out := e.hike.Out.String(); strings.Contains(out, `msg="unexpected message ID"`) {
				t.Fatalf("hike did not recognise the retransmission:\n%s", grepLines(out, "unexpected message ID"))
			}
			if tc.exchange == wire.CREATE_CHILD_SA {
				// Processed once: one rekey, and once charon has deleted
				// the old Child SA, hike has exactly the new one.
				if n := strings.Count(e.hike.Out.String(), `msg="Child SA rekeyed by peer"`); n != 1 {
					t.Fatalf("hike rekeyed %d times for one request", n)
				}
				waitFor(t, 5*time.Second, "hike to hold only the new Child SA", func() bool {
					hs := e.hikeSAs()
					if len(hs) != 1 {
						return false
					}
					ch, _ := hs[0]["children"].([]any)
					return len(ch) == 1 && !strings.EqualFold(ch[0].(map[string]any)["spi_out"].(string), oldSPI)
				})
			}
			// charon lists the old Child SA as DELETED for a moment.
			waitFor(t, 5*time.Second, "strongSwan to hold one installed Child SA", func() bool {
				sas, err := d.SAs()
				if err != nil || len(sas) != 1 || sas[0].State != "ESTABLISHED" {
					return false
				}
				n := 0
				for _, ch := range sas[0].Children {
					if ch.State == "INSTALLED" {
						n++
					}
				}
				return n == 1
			})
			e.ping(c, gwInner, 2)
			t.Logf("Message ID %d: %d requests, %d identical responses of %d octets", mid, len(reqs), len(resps), len(resps[0]))
		})
	}
}

// requireTool fails (CI) or skips when a program is missing.
func requireTool(t *testing.T, name string) {
	t.Helper()
	labtest.Require(t, func() error {
		if _, err := exec.LookPath(name); err != nil {
			return fmt.Errorf("%s is not installed (scripts/test.sh installs it)", name)
		}
		return nil
	})
}
