package crypto

import (
	"errors"
	"testing"

	"github.com/hike-vpn/hike/internal/wire"
)

func tr(typ wire.TransformType, id uint16, keyLen ...uint16) wire.Transform {
	t := wire.Transform{Type: typ, ID: id}
	if len(keyLen) > 0 {
		t.KeyLen = keyLen[0]
	}
	return t
}

func ikeProp(num uint8, ts ...wire.Transform) wire.Proposal {
	return wire.Proposal{Num: num, Protocol: wire.ProtoIKE, Transforms: ts}
}

func espProp(num uint8, ts ...wire.Transform) wire.Proposal {
	return wire.Proposal{Num: num, Protocol: wire.ProtoESP, SPI: []byte{1, 2, 3, 4}, Transforms: ts}
}

const (
	tENCR  = wire.TransformENCR
	tPRF   = wire.TransformPRF
	tINTEG = wire.TransformINTEG
	tDH    = wire.TransformDH
	tESN   = wire.TransformESN
)

var ikePolicy = []wire.Proposal{
	ikeProp(1, tr(tENCR, wire.ENCR_AES_GCM_16, 256), tr(tPRF, wire.PRF_HMAC_SHA2_256), tr(tPRF, wire.PRF_HMAC_SHA2_384),
		tr(tDH, wire.DH_CURVE25519), tr(tDH, wire.DH_ECP_256)),
	ikeProp(2, tr(tENCR, wire.ENCR_AES_CBC, 256), tr(tENCR, wire.ENCR_AES_CBC, 128), tr(tPRF, wire.PRF_HMAC_SHA2_256),
		tr(tINTEG, wire.AUTH_HMAC_SHA2_256_128), tr(tINTEG, wire.AUTH_HMAC_SHA1_96), tr(tDH, wire.DH_ECP_256), tr(tDH, wire.DH_MODP_2048)),
}

func ids(ts []wire.Transform) map[wire.TransformType]wire.Transform {
	m := map[wire.TransformType]wire.Transform{}
	for _, t := range ts {
		m[t.Type] = t
	}
	return m
}

func TestSelectIKE(t *testing.T) {
	cbcOffer := ikeProp(2, tr(tENCR, wire.ENCR_AES_CBC, 128), tr(tENCR, wire.ENCR_AES_CBC, 256), tr(tENCR, 9999),
		tr(tPRF, wire.PRF_HMAC_SHA1), tr(tPRF, wire.PRF_HMAC_SHA2_256),
		tr(tINTEG, wire.AUTH_HMAC_SHA1_96), tr(tINTEG, wire.AUTH_HMAC_SHA2_256_128),
		tr(tDH, wire.DH_MODP_2048), tr(tDH, wire.DH_ECP_256))
	offer := []wire.Proposal{
		espProp(1, tr(tENCR, wire.ENCR_AES_GCM_16, 256)), // wrong protocol
		cbcOffer,
	}
	sel, err := Select(offer, ikePolicy, wire.ProtoIKE, wire.DH_ECP_256)
	if err != nil {
		t.Fatal(err)
	}
	if sel.Proposal.Num != 2 || sel.Proposal.Protocol != wire.ProtoIKE || sel.Proposal.SPI != nil {
		t.Fatalf("proposal %+v", sel.Proposal)
	}
	got := ids(sel.Proposal.Transforms)
	// Our order decides: CBC-256 before -128, SHA2-256 for PRF and INTEG.
	want := map[wire.TransformType]wire.Transform{
		tENCR: tr(tENCR, wire.ENCR_AES_CBC, 256), tPRF: tr(tPRF, wire.PRF_HMAC_SHA2_256),
		tINTEG: tr(tINTEG, wire.AUTH_HMAC_SHA2_256_128), tDH: tr(tDH, wire.DH_ECP_256),
	}
	if len(sel.Proposal.Transforms) != 4 || len(got) != 4 {
		t.Fatalf("transforms %+v", sel.Proposal.Transforms)
	}
	for typ, w := range want {
		if got[typ] != w {
			t.Fatalf("type %d: %+v, want %+v", typ, got[typ], w)
		}
	}
	if sel.Encr.ID != wire.ENCR_AES_CBC || sel.Encr.KeyLen != 32 || sel.PRF.ID != wire.PRF_HMAC_SHA2_256 ||
		sel.Integ == nil || sel.Integ.ID != wire.AUTH_HMAC_SHA2_256_128 || sel.DH.ID() != wire.DH_ECP_256 || sel.ESN {
		t.Fatalf("looked-up transforms wrong: %+v", sel)
	}

	// The KE's group is taken if acceptable, although the policy prefers
	// ECP-256: no INVALID_KE round trip.
	sel, err = Select(offer, ikePolicy, wire.ProtoIKE, wire.DH_MODP_2048)
	if err != nil || sel.DH.ID() != wire.DH_MODP_2048 {
		t.Fatalf("KE group not preferred: %v", err)
	}

	// A KE group the policy refuses: INVALID_KE_PAYLOAD naming our group.
	_, err = Select(offer, ikePolicy, wire.ProtoIKE, wire.DH_ECP_384)
	var ne *NegotiationError
	if !errors.As(err, &ne) || ne.Notify != wire.INVALID_KE_PAYLOAD || ne.Group != wire.DH_ECP_256 {
		t.Fatalf("err %v", err)
	}
	if d := ne.NotifyData(); len(d) != 2 || d[0] != 0 || d[1] != 19 {
		t.Fatalf("notify data %x", d)
	}

	// Only 3DES offered: nothing acceptable.
	_, err = Select([]wire.Proposal{ikeProp(1, tr(tENCR, wire.ENCR_3DES), tr(tPRF, wire.PRF_HMAC_SHA2_256),
		tr(tINTEG, wire.AUTH_HMAC_SHA2_256_128), tr(tDH, wire.DH_ECP_256))}, ikePolicy, wire.ProtoIKE, wire.DH_ECP_256)
	if !errors.As(err, &ne) || ne.Notify != wire.NO_PROPOSAL_CHOSEN || ne.NotifyData() != nil {
		t.Fatalf("err %v", err)
	}
	// No proposal for the protocol at all.
	if _, err := Select(offer[:1], ikePolicy, wire.ProtoIKE, wire.DH_ECP_256); !errors.As(err, &ne) || ne.Notify != wire.NO_PROPOSAL_CHOSEN {
		t.Fatalf("err %v", err)
	}
}

func TestSelectIKEAEAD(t *testing.T) {
	base := []wire.Transform{tr(tENCR, wire.ENCR_AES_GCM_16, 256), tr(tPRF, wire.PRF_HMAC_SHA2_384), tr(tDH, wire.DH_CURVE25519)}
	with := func(extra ...wire.Transform) []wire.Proposal {
		return []wire.Proposal{ikeProp(1, append(append([]wire.Transform{}, base...), extra...)...)}
	}
	sel, err := Select(with(), ikePolicy, wire.ProtoIKE, wire.DH_CURVE25519)
	if err != nil || sel.Integ != nil || !sel.Encr.AEAD() || sel.PRF.ID != wire.PRF_HMAC_SHA2_384 {
		t.Fatalf("AEAD without INTEG: %v", err)
	}
	if _, ok := ids(sel.Proposal.Transforms)[tINTEG]; ok {
		t.Fatal("INTEG sent back although none was offered")
	}
	sel, err = Select(with(tr(tINTEG, wire.AUTH_NONE)), ikePolicy, wire.ProtoIKE, wire.DH_CURVE25519)
	if err != nil || sel.Integ != nil {
		t.Fatalf("AEAD with INTEG NONE: %v", err)
	}
	if it, ok := ids(sel.Proposal.Transforms)[tINTEG]; !ok || it.ID != wire.AUTH_NONE {
		t.Fatal("INTEG NONE offered but not sent back")
	}
	// RFC 5282 §8: an AEAD proposal with a real INTEG is not acceptable.
	if _, err := Select(with(tr(tINTEG, wire.AUTH_HMAC_SHA2_256_128)), ikePolicy, wire.ProtoIKE, wire.DH_CURVE25519); err == nil {
		t.Fatal("AEAD with HMAC INTEG accepted")
	}
	// A mixed proposal (RFC 5282 §8 allows it): the AEAD is chosen and no
	// INTEG goes back.
	mixed := []wire.Proposal{ikeProp(1, tr(tENCR, wire.ENCR_AES_GCM_16, 256), tr(tENCR, wire.ENCR_AES_CBC, 256),
		tr(tPRF, wire.PRF_HMAC_SHA2_256), tr(tINTEG, wire.AUTH_HMAC_SHA2_256_128), tr(tDH, wire.DH_CURVE25519))}
	sel, err = Select(mixed, ikePolicy, wire.ProtoIKE, wire.DH_CURVE25519)
	if err != nil || !sel.Encr.AEAD() || sel.Integ != nil {
		t.Fatalf("mixed proposal: %v", err)
	}
	if _, ok := ids(sel.Proposal.Transforms)[tINTEG]; ok {
		t.Fatal("INTEG selected with an AEAD")
	}
	if _, err := CheckChoice(mixed, []wire.Proposal{sel.Proposal}, wire.ProtoIKE, wire.DH_CURVE25519); err != nil {
		t.Fatalf("CheckChoice of a mixed proposal: %v", err)
	}
	// CBC with only INTEG NONE is never acceptable.
	cbc := []wire.Proposal{ikeProp(1, tr(tENCR, wire.ENCR_AES_CBC, 256), tr(tPRF, wire.PRF_HMAC_SHA2_256), tr(tINTEG, wire.AUTH_NONE), tr(tDH, wire.DH_ECP_256))}
	if _, err := Select(cbc, ikePolicy, wire.ProtoIKE, wire.DH_ECP_256); err == nil {
		t.Fatal("CBC without integrity accepted")
	}
}

func TestSelectSkipsWhatItCannotUse(t *testing.T) {
	good := []wire.Transform{tr(tENCR, wire.ENCR_AES_GCM_16, 256), tr(tPRF, wire.PRF_HMAC_SHA2_256), tr(tDH, wire.DH_CURVE25519)}
	cases := []struct {
		name string
		p    wire.Proposal
		ok   bool
	}{
		{"unknown transform ID next to a good one", ikeProp(1, append([]wire.Transform{tr(tPRF, 999)}, good...)...), true},
		{"unknown transform type", ikeProp(1, append([]wire.Transform{tr(9, 1)}, good...)...), false},
		{"unsupported attribute", ikeProp(1, wire.Transform{Type: tENCR, ID: wire.ENCR_AES_GCM_16, KeyLen: 256, Unsupported: true}, good[1], good[2]), false},
		{"wrong key length", ikeProp(1, tr(tENCR, wire.ENCR_AES_GCM_16, 192), good[1], good[2]), false},
		{"no key length", ikeProp(1, tr(tENCR, wire.ENCR_AES_GCM_16), good[1], good[2]), false},
		{"no PRF", ikeProp(1, good[0], good[2]), false},
		{"no DH", ikeProp(1, good[0], good[1]), false},
		{"ESN in IKE", ikeProp(1, append([]wire.Transform{tr(tESN, wire.ESN_NO)}, good...)...), false},
	}
	for _, c := range cases {
		_, err := Select([]wire.Proposal{c.p}, ikePolicy, wire.ProtoIKE, wire.DH_CURVE25519)
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v", c.name, err)
		}
	}
	// A later proposal is taken when earlier ones fail, keeping its number.
	sel, err := Select([]wire.Proposal{cases[1].p, cases[3].p, ikeProp(3, good...)}, ikePolicy, wire.ProtoIKE, wire.DH_CURVE25519)
	if err != nil || sel.Proposal.Num != 3 {
		t.Fatalf("err %v", err)
	}
}

var espPolicy = []wire.Proposal{
	{Protocol: wire.ProtoESP, Transforms: []wire.Transform{tr(tENCR, wire.ENCR_AES_GCM_16, 256), tr(tENCR, wire.ENCR_AES_CBC, 128),
		tr(tINTEG, wire.AUTH_HMAC_SHA2_256_128), tr(tDH, wire.DH_CURVE25519), tr(tDH, wire.DH_NONE), tr(tESN, wire.ESN_YES), tr(tESN, wire.ESN_NO)}},
}

func TestSelectESP(t *testing.T) {
	offer := []wire.Proposal{
		ikeProp(1, tr(tENCR, wire.ENCR_AES_GCM_16, 256)), // wrong protocol
		espProp(2, tr(tENCR, wire.ENCR_AES_CBC, 128), tr(tINTEG, wire.AUTH_HMAC_SHA2_256_128), tr(tESN, wire.ESN_NO), tr(tESN, wire.ESN_YES), tr(tDH, wire.DH_CURVE25519)),
	}
	// IKE_AUTH: no KE, so the DH transforms are ignored.
	sel, err := Select(offer, espPolicy, wire.ProtoESP, wire.DH_NONE)
	if err != nil {
		t.Fatal(err)
	}
	if sel.Proposal.Num != 2 || string(sel.PeerSPI) != "\x01\x02\x03\x04" || sel.DH != nil || !sel.ESN || sel.PRF != nil ||
		sel.Encr.ID != wire.ENCR_AES_CBC || sel.Integ.ID != wire.AUTH_HMAC_SHA2_256_128 {
		t.Fatalf("selection %+v", sel)
	}
	if _, ok := ids(sel.Proposal.Transforms)[tDH]; ok {
		t.Fatal("DH sent back without a KE")
	}
	// An explicit DH NONE is echoed.
	explicit := []wire.Proposal{espProp(1, tr(tENCR, wire.ENCR_AES_GCM_16, 256), tr(tDH, wire.DH_NONE), tr(tESN, wire.ESN_NO))}
	sel, err = Select(explicit, espPolicy, wire.ProtoESP, wire.DH_NONE)
	if err != nil || sel.DH != nil {
		t.Fatalf("explicit DH NONE: %v", err)
	}
	if dh, ok := ids(sel.Proposal.Transforms)[tDH]; !ok || dh.ID != wire.DH_NONE {
		t.Fatal("DH NONE offered but not echoed")
	}
	// CREATE_CHILD_SA with PFS.
	sel, err = Select(offer, espPolicy, wire.ProtoESP, wire.DH_CURVE25519)
	if err != nil || sel.DH == nil || sel.DH.ID() != wire.DH_CURVE25519 {
		t.Fatalf("PFS: %v", err)
	}
	// ESN omitted by the peer: accepted as "no ESN" since the policy allows it.
	noESN := []wire.Proposal{espProp(1, tr(tENCR, wire.ENCR_AES_GCM_16, 256))}
	sel, err = Select(noESN, espPolicy, wire.ProtoESP, wire.DH_NONE)
	if err != nil || sel.ESN || sel.Integ != nil {
		t.Fatalf("no ESN: %v", err)
	}
	onlyESN := []wire.Proposal{{Protocol: wire.ProtoESP, Transforms: []wire.Transform{tr(tENCR, wire.ENCR_AES_GCM_16, 256), tr(tESN, wire.ESN_YES)}}}
	if _, err := Select(noESN, onlyESN, wire.ProtoESP, wire.DH_NONE); err == nil {
		t.Fatal("ESN required by policy but peer offered none")
	}
	// A policy without DH refuses a PFS offer.
	noPFS := []wire.Proposal{{Protocol: wire.ProtoESP, Transforms: []wire.Transform{tr(tENCR, wire.ENCR_AES_GCM_16, 256), tr(tESN, wire.ESN_NO)}}}
	pfs := []wire.Proposal{espProp(1, tr(tENCR, wire.ENCR_AES_GCM_16, 256), tr(tDH, wire.DH_ECP_256), tr(tESN, wire.ESN_NO))}
	if _, err := Select(pfs, noPFS, wire.ProtoESP, wire.DH_ECP_256); err == nil {
		t.Fatal("PFS offer accepted by a policy without DH")
	}
	// A PRF has no place in ESP.
	prf := []wire.Proposal{espProp(1, tr(tENCR, wire.ENCR_AES_GCM_16, 256), tr(tPRF, wire.PRF_HMAC_SHA2_256), tr(tESN, wire.ESN_NO))}
	if _, err := Select(prf, espPolicy, wire.ProtoESP, wire.DH_NONE); err == nil {
		t.Fatal("ESP proposal with a PRF accepted")
	}
}

func TestCheckChoice(t *testing.T) {
	offer := []wire.Proposal{
		ikeProp(1, tr(tENCR, wire.ENCR_AES_GCM_16, 256), tr(tPRF, wire.PRF_HMAC_SHA2_256), tr(tDH, wire.DH_CURVE25519), tr(tDH, wire.DH_ECP_256)),
		ikeProp(2, tr(tENCR, wire.ENCR_AES_CBC, 256), tr(tPRF, wire.PRF_HMAC_SHA2_256), tr(tINTEG, wire.AUTH_HMAC_SHA2_256_128), tr(tDH, wire.DH_CURVE25519)),
	}
	// What our own responder side picks must pass our initiator check.
	cbcPolicy := []wire.Proposal{ikeProp(1, tr(tENCR, wire.ENCR_AES_CBC, 256), tr(tPRF, wire.PRF_HMAC_SHA2_256),
		tr(tINTEG, wire.AUTH_HMAC_SHA2_256_128), tr(tDH, wire.DH_CURVE25519))}
	for _, policy := range [][]wire.Proposal{ikePolicy, cbcPolicy} {
		sel, err := Select(offer, policy, wire.ProtoIKE, wire.DH_CURVE25519)
		if err != nil {
			t.Fatal(err)
		}
		chosen := sel.Proposal
		chosen.SPI = []byte{9, 9, 9, 9, 9, 9, 9, 9}
		got, err := CheckChoice(offer, []wire.Proposal{chosen}, wire.ProtoIKE, wire.DH_CURVE25519)
		if err != nil {
			t.Fatalf("own choice refused: %v", err)
		}
		if got.Encr != sel.Encr || got.PRF != sel.PRF || got.Integ != sel.Integ || got.DH.ID() != sel.DH.ID() {
			t.Fatal("CheckChoice looked up other transforms than Select")
		}
	}
	good := ikeProp(2, tr(tENCR, wire.ENCR_AES_CBC, 256), tr(tPRF, wire.PRF_HMAC_SHA2_256), tr(tINTEG, wire.AUTH_HMAC_SHA2_256_128), tr(tDH, wire.DH_CURVE25519))
	bad := map[string][]wire.Proposal{
		"two proposals":        {good, good},
		"no proposal":          {},
		"unknown number":       {ikeProp(3, good.Transforms...)},
		"other number's ENCR":  {ikeProp(1, good.Transforms...)},
		"ENCR not offered":     {ikeProp(2, tr(tENCR, wire.ENCR_AES_CBC, 128), good.Transforms[1], good.Transforms[2], good.Transforms[3])},
		"two DH groups":        {ikeProp(2, append(append([]wire.Transform{}, good.Transforms...), tr(tDH, wire.DH_ECP_256))...)},
		"DH other than KE":     {ikeProp(1, tr(tENCR, wire.ENCR_AES_GCM_16, 256), tr(tPRF, wire.PRF_HMAC_SHA2_256), tr(tDH, wire.DH_ECP_256))},
		"DH missing":           {ikeProp(2, good.Transforms[:3]...)},
		"INTEG missing on CBC": {ikeProp(2, good.Transforms[0], good.Transforms[1], good.Transforms[3])},
		"wrong protocol":       {{Num: 2, Protocol: wire.ProtoESP, Transforms: good.Transforms}},
	}
	for name, c := range bad {
		if _, err := CheckChoice(offer, c, wire.ProtoIKE, wire.DH_CURVE25519); !errors.Is(err, ErrChoiceNotOffered) {
			t.Errorf("%s: err %v", name, err)
		}
	}
	if _, err := CheckChoice(offer, []wire.Proposal{good}, wire.ProtoIKE, wire.DH_CURVE25519); err != nil {
		t.Fatalf("good choice refused: %v", err)
	}
}

// FuzzSelect feeds parsed SA payloads to Select and checks the property
// that ties both sides together: whatever our responder side accepts, our
// initiator side must accept as an answer to the same offer.
func FuzzSelect(f *testing.F) {
	f.Add(wire.AppendSA(nil, []wire.Proposal{
		ikeProp(1, tr(tENCR, wire.ENCR_AES_GCM_16, 256), tr(tENCR, wire.ENCR_AES_CBC, 256), tr(tPRF, wire.PRF_HMAC_SHA2_256),
			tr(tINTEG, wire.AUTH_HMAC_SHA2_256_128), tr(tDH, wire.DH_CURVE25519), tr(tDH, wire.DH_ECP_256)),
		ikeProp(2, tr(tENCR, wire.ENCR_AES_CBC, 128), tr(tPRF, wire.PRF_HMAC_SHA1), tr(tINTEG, wire.AUTH_HMAC_SHA1_96), tr(tDH, wire.DH_MODP_2048)),
	}), uint16(wire.DH_CURVE25519))
	f.Add(wire.AppendSA(nil, []wire.Proposal{
		espProp(1, tr(tENCR, wire.ENCR_AES_GCM_16, 256), tr(tINTEG, wire.AUTH_NONE), tr(tESN, wire.ESN_YES), tr(tESN, wire.ESN_NO)),
		espProp(2, tr(tENCR, wire.ENCR_AES_CBC, 128), tr(tINTEG, wire.AUTH_HMAC_SHA2_256_128), tr(tDH, wire.DH_CURVE25519), tr(tESN, wire.ESN_NO)),
	}), uint16(wire.DH_NONE))
	f.Fuzz(func(t *testing.T, body []byte, ke uint16) {
		offered, err := wire.ParseSA(nil, body)
		if err != nil {
			return
		}
		for _, c := range []struct {
			proto  wire.ProtocolID
			policy []wire.Proposal
		}{{wire.ProtoIKE, ikePolicy}, {wire.ProtoESP, espPolicy}} {
			sel, err := Select(offered, c.policy, c.proto, ke)
			if err != nil {
				var ne *NegotiationError
				if !errors.As(err, &ne) {
					t.Fatalf("untyped error %v", err)
				}
				continue
			}
			if _, err := CheckChoice(offered, []wire.Proposal{sel.Proposal}, c.proto, ke); err != nil {
				t.Fatalf("own selection %+v refused by CheckChoice: %v", sel.Proposal, err)
			}
		}
	})
}
