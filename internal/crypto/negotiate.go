package crypto

import (
	"errors"

	"github.com/hike-vpn/hike/internal/wire"
)

// Selection is an accepted proposal with its transforms looked up, so that
// the IKE layer never resolves an ID twice.
type Selection struct {
	// Proposal is what goes back in the responder's SA payload: the offered
	// proposal's number and protocol and one transform of each type the
	// offer held (RFC 7296 §2.7). Its SPI is nil; the responder fills in its
	// own.
	Proposal wire.Proposal
	// PeerSPI is the SPI the peer put in the accepted proposal (it aliases
	// the parsed SA payload).
	PeerSPI []byte

	Encr  *Encr
	PRF   *PRF   // nil for ESP
	Integ *Integ // nil with an AEAD
	DH    Group  // nil without a Diffie-Hellman exchange
	ESN   bool
}

// NegotiationError is a failed selection and the notify it calls for:
// NO_PROPOSAL_CHOSEN, or INVALID_KE_PAYLOAD when a proposal would be
// acceptable with another Diffie-Hellman group than the one in the KE
// payload (RFC 7296 §1.2, §1.3).
type NegotiationError struct {
	Notify wire.NotifyType
	Group  uint16 // for INVALID_KE_PAYLOAD: the group the responder wants
}

func (e *NegotiationError) Error() string {
	if e.Notify == wire.INVALID_KE_PAYLOAD {
		return "crypto: proposal needs another Diffie-Hellman group"
	}
	return "crypto: no acceptable proposal"
}

// NotifyData returns the data of the notify owed: the two-octet group for
// INVALID_KE_PAYLOAD (RFC 7296 §3.10.1), nothing otherwise.
func (e *NegotiationError) NotifyData() []byte {
	if e.Notify == wire.INVALID_KE_PAYLOAD {
		return []byte{byte(e.Group >> 8), byte(e.Group)}
	}
	return nil
}

var errNoProposal = &NegotiationError{Notify: wire.NO_PROPOSAL_CHOSEN}

// ErrChoiceNotOffered reports a responder's SA payload that does not accept
// exactly one of the proposals we offered with transforms from it. The
// initiator must refuse such an answer (RFC 7296 §2.7, §3.3.6).
var ErrChoiceNotOffered = errors.New("crypto: responder chose something not offered")

const numTransformTypes = 5 // ENCR, PRF, INTEG, DH, ESN (RFC 7296 §3.3.2)

// byType sorts a proposal's transforms by type. unknown is set when the
// proposal holds a transform type hike does not know, which RFC 7296 §3.3.6
// says makes the whole proposal unacceptable. present records types that
// appear at all, even if only with transforms hike cannot use.
type byType struct {
	ts      [numTransformTypes + 1][]wire.Transform
	present [numTransformTypes + 1]bool
	count   [numTransformTypes + 1]int
	unknown bool
}

func sortTransforms(ts []wire.Transform) *byType {
	var b byType
	for _, t := range ts {
		if t.Type < wire.TransformENCR || t.Type > wire.TransformESN {
			b.unknown = true
			continue
		}
		b.present[t.Type] = true
		b.count[t.Type]++
		// A transform with an attribute hike does not understand is
		// skipped, not matched (RFC 7296 §3.3.6).
		if !t.Unsupported {
			b.ts[t.Type] = append(b.ts[t.Type], t)
		}
	}
	return &b
}

func has(ts []wire.Transform, t wire.Transform) bool {
	for _, x := range ts {
		if x.ID == t.ID && x.KeyLen == t.KeyLen {
			return true
		}
	}
	return false
}

// offersNonAEAD reports whether ts holds a cipher that needs an INTEG
// transform: any ENCR but the combined modes of RFC 5282 and RFC 7634.
func offersNonAEAD(ts []wire.Transform) bool {
	for _, t := range ts {
		switch t.ID {
		case wire.ENCR_AES_CCM_8, wire.ENCR_AES_CCM_12, wire.ENCR_AES_CCM_16,
			wire.ENCR_AES_GCM_8, wire.ENCR_AES_GCM_12, wire.ENCR_AES_GCM_16, wire.ENCR_CHACHA20_POLY1305:
		default:
			return true
		}
	}
	return false
}

// noneOnly is the acceptable set for INTEG, DH and ESN when a policy lists
// none of that type: ID 0 is NONE for INTEG and DH and "no ESN" for ESN.
var noneOnly = []wire.Transform{{ID: 0}}

// Select chooses the proposal to accept from a peer's offer (RFC 7296
// §2.7). policy is the local list of acceptable proposals in order of
// preference; each policy proposal lists, per transform type, the acceptable
// transforms in order of preference. hike's preference wins over the
// peer's order. Offered proposals for another protocol than proto are
// skipped.
//
// ke is the group of the KE payload that came with the offer, or
// wire.DH_NONE when there was none (IKE_AUTH, or CREATE_CHILD_SA without
// PFS); it is required for IKE SAs. With a KE payload, a proposal that is
// acceptable with the KE's group is chosen with that group; if every
// acceptable proposal needs another group, the error is INVALID_KE_PAYLOAD
// with the group hike prefers. Without one, Diffie-Hellman transforms of
// Child SA proposals are ignored (an explicit NONE is echoed): RFC 7296 §1.2
// allows no other group in IKE_AUTH.
//
// For INTEG, DH and ESN a policy that lists nothing of the type accepts
// only NONE (or "no ESN") and an offer that omits the type. With an AEAD no
// INTEG is selected (RFC 5282 §8): INTEG NONE is echoed if offered, and a
// proposal of AEADs only that offers a real INTEG is refused.
func Select(offered, policy []wire.Proposal, proto wire.ProtocolID, ke uint16) (*Selection, error) {
	if proto == wire.ProtoIKE && ke == wire.DH_NONE {
		return nil, errNoProposal
	}
	var wantGroup uint16
	for i := range policy {
		pol := &policy[i]
		if pol.Protocol != proto {
			continue
		}
		p := sortTransforms(pol.Transforms)
		for j := range offered {
			off := &offered[j]
			if off.Protocol != proto {
				continue
			}
			o := sortTransforms(off.Transforms)
			if o.unknown {
				continue
			}
			sel, ok := match(o, p, proto, ke)
			if !ok {
				continue
			}
			if ke != wire.DH_NONE || proto == wire.ProtoIKE {
				switch {
				case sel.DH == nil:
					// A KE payload without a group in the proposal, or an
					// IKE proposal without DH: not acceptable.
					continue
				case sel.DH.ID() != ke:
					if wantGroup == 0 {
						wantGroup = sel.DH.ID()
					}
					continue
				}
			}
			sel.Proposal.Num = off.Num
			sel.Proposal.Protocol = off.Protocol
			sel.PeerSPI = off.SPI
			return sel, nil
		}
	}
	if wantGroup != 0 {
		return nil, &NegotiationError{Notify: wire.INVALID_KE_PAYLOAD, Group: wantGroup}
	}
	return nil, errNoProposal
}

// match picks one transform of each type from the offered proposal o that
// the policy proposal p accepts.
func match(o, p *byType, proto wire.ProtocolID, ke uint16) (*Selection, bool) {
	sel := &Selection{}
	out := make([]wire.Transform, 0, numTransformTypes)

	// PRF: required for IKE, meaningless for ESP and AH.
	if o.present[wire.TransformPRF] {
		t, ok := first(p.ts[wire.TransformPRF], o.ts[wire.TransformPRF], 0)
		if !ok {
			return nil, false
		}
		prf, err := LookupPRF(t.ID)
		if err != nil {
			return nil, false
		}
		sel.PRF = prf
		out = append(out, wire.Transform{Type: wire.TransformPRF, ID: t.ID})
	} else if proto == wire.ProtoIKE || len(p.ts[wire.TransformPRF]) != 0 {
		return nil, false
	}

	// ENCR, with the INTEG it needs: an AEAD takes no INTEG, a cipher
	// without integrity needs a real one.
	var encrT, integT wire.Transform
	integPresent := false
	if o.present[wire.TransformENCR] {
		found := false
		for _, pt := range p.ts[wire.TransformENCR] {
			if !has(o.ts[wire.TransformENCR], pt) {
				continue
			}
			e, err := LookupEncr(pt.ID, pt.KeyLen)
			if err != nil {
				continue
			}
			if e.AEAD() {
				// RFC 5282 §8: with an AEAD no INTEG is selected. A proposal
				// that also offers non-AEAD ciphers carries INTEG transforms
				// for them; one with only AEADs must carry none but NONE.
				if o.present[wire.TransformINTEG] {
					if has(o.ts[wire.TransformINTEG], wire.Transform{ID: wire.AUTH_NONE}) {
						integT, integPresent = wire.Transform{Type: wire.TransformINTEG, ID: wire.AUTH_NONE}, true
					} else if !offersNonAEAD(o.ts[wire.TransformENCR]) {
						continue
					}
				}
				sel.Encr, sel.Integ, encrT, found = e, nil, pt, true
				break
			}
			if !o.present[wire.TransformINTEG] {
				continue
			}
			it, ok := first(p.ts[wire.TransformINTEG], o.ts[wire.TransformINTEG], wire.AUTH_NONE)
			if !ok {
				continue
			}
			integ, err := LookupInteg(it.ID)
			if err != nil {
				continue
			}
			sel.Encr, sel.Integ, encrT, found = e, integ, pt, true
			integT, integPresent = wire.Transform{Type: wire.TransformINTEG, ID: it.ID}, true
			break
		}
		if !found {
			return nil, false
		}
		out = append(out, wire.Transform{Type: wire.TransformENCR, ID: encrT.ID, KeyLen: encrT.KeyLen})
		if integPresent {
			out = append(out, integT)
		}
	} else {
		// Only AH has no ENCR; hike does not implement AH.
		return nil, false
	}

	// DH: prefer the group of the KE payload when the policy allows it.
	if ke != wire.DH_NONE || proto == wire.ProtoIKE {
		if t, ok := chooseOptional(p.ts[wire.TransformDH], o, wire.TransformDH, ke); !ok {
			return nil, false
		} else if t != nil {
			if t.ID != wire.DH_NONE {
				g, err := LookupGroup(t.ID)
				if err != nil {
					return nil, false
				}
				sel.DH = g
			}
			out = append(out, wire.Transform{Type: wire.TransformDH, ID: t.ID})
		}
	} else if has(o.ts[wire.TransformDH], wire.Transform{ID: wire.DH_NONE}) {
		// Without a KE payload only NONE can be meant; echo it when the
		// peer spelled it out, since the answer holds one transform of
		// each type offered.
		out = append(out, wire.Transform{Type: wire.TransformDH, ID: wire.DH_NONE})
	}

	// ESN exists for ESP only.
	if proto == wire.ProtoIKE {
		if o.present[wire.TransformESN] {
			return nil, false
		}
	} else if t, ok := chooseOptional(p.ts[wire.TransformESN], o, wire.TransformESN, 0xffff); !ok {
		return nil, false
	} else if t != nil {
		if t.ID != wire.ESN_NO && t.ID != wire.ESN_YES {
			return nil, false
		}
		sel.ESN = t.ID == wire.ESN_YES
		out = append(out, wire.Transform{Type: wire.TransformESN, ID: t.ID})
	}
	sel.Proposal.Transforms = out
	return sel, true
}

// chooseOptional picks a transform of type typ for the types where ID 0
// means "none": the offer's first match in policy order, or prefer if the
// policy accepts it. It returns nil (and true) when the offer omits the type
// and the policy allows that.
func chooseOptional(pol []wire.Transform, o *byType, typ wire.TransformType, prefer uint16) (*wire.Transform, bool) {
	if len(pol) == 0 {
		pol = noneOnly
	}
	if !o.present[typ] {
		return nil, has(pol, wire.Transform{ID: 0})
	}
	pref := wire.Transform{ID: prefer}
	if has(pol, pref) && has(o.ts[typ], pref) {
		return &pref, true
	}
	t, ok := first(pol, o.ts[typ], 0xffff)
	if !ok {
		return nil, false
	}
	return &t, true
}

// first returns the first transform of pol (in its order) that the offer
// holds, never one with ID skip.
func first(pol, offer []wire.Transform, skip uint16) (wire.Transform, bool) {
	for _, t := range pol {
		if t.ID != skip && has(offer, t) {
			return t, true
		}
	}
	return wire.Transform{}, false
}

// CheckChoice is the initiator's check of a responder's SA payload
// (RFC 7296 §2.7): it must hold exactly one proposal, with the number and
// protocol of one we offered and exactly one transform of each type from
// that proposal. INTEG may be left out with an AEAD, and DH when we sent no
// KE payload (ke is wire.DH_NONE). With a KE payload, the responder must
// have chosen its group.
func CheckChoice(offered, chosen []wire.Proposal, proto wire.ProtocolID, ke uint16) (*Selection, error) {
	if len(chosen) != 1 || chosen[0].Protocol != proto {
		return nil, ErrChoiceNotOffered
	}
	c := &chosen[0]
	var off *wire.Proposal
	for i := range offered {
		if offered[i].Num == c.Num && offered[i].Protocol == proto {
			off = &offered[i]
		}
	}
	if off == nil {
		return nil, ErrChoiceNotOffered
	}
	o := sortTransforms(off.Transforms)
	cs := sortTransforms(c.Transforms)
	if cs.unknown {
		return nil, ErrChoiceNotOffered
	}
	for typ := wire.TransformENCR; typ <= wire.TransformESN; typ++ {
		if cs.count[typ] > 1 || cs.count[typ] != len(cs.ts[typ]) {
			return nil, ErrChoiceNotOffered
		}
		if len(cs.ts[typ]) == 1 && !has(o.ts[typ], cs.ts[typ][0]) {
			return nil, ErrChoiceNotOffered
		}
	}
	sel := &Selection{Proposal: *c, PeerSPI: c.SPI}
	pick := func(typ wire.TransformType) (wire.Transform, bool) {
		if len(cs.ts[typ]) == 0 {
			return wire.Transform{}, false
		}
		return cs.ts[typ][0], true
	}
	var err error
	t, ok := pick(wire.TransformENCR)
	if !ok {
		return nil, ErrChoiceNotOffered
	}
	if sel.Encr, err = LookupEncr(t.ID, t.KeyLen); err != nil {
		return nil, ErrChoiceNotOffered
	}
	switch it, ok := pick(wire.TransformINTEG); {
	case ok && it.ID != wire.AUTH_NONE:
		if sel.Encr.AEAD() {
			return nil, ErrChoiceNotOffered
		}
		if sel.Integ, err = LookupInteg(it.ID); err != nil {
			return nil, ErrChoiceNotOffered
		}
	case !sel.Encr.AEAD():
		// A cipher without integrity protection is never acceptable.
		return nil, ErrChoiceNotOffered
	}
	if t, ok := pick(wire.TransformPRF); ok {
		if sel.PRF, err = LookupPRF(t.ID); err != nil {
			return nil, ErrChoiceNotOffered
		}
	} else if proto == wire.ProtoIKE {
		return nil, ErrChoiceNotOffered
	}
	dh, ok := pick(wire.TransformDH)
	switch {
	case ok && dh.ID != wire.DH_NONE:
		if dh.ID != ke {
			return nil, ErrChoiceNotOffered
		}
		if sel.DH, err = LookupGroup(dh.ID); err != nil {
			return nil, ErrChoiceNotOffered
		}
	case ke != wire.DH_NONE:
		return nil, ErrChoiceNotOffered
	}
	if t, ok := pick(wire.TransformESN); ok {
		if proto == wire.ProtoIKE || t.ID > wire.ESN_YES {
			return nil, ErrChoiceNotOffered
		}
		sel.ESN = t.ID == wire.ESN_YES
	} else if o.present[wire.TransformESN] && !has(o.ts[wire.TransformESN], wire.Transform{ID: wire.ESN_NO}) {
		return nil, ErrChoiceNotOffered
	}
	return sel, nil
}
