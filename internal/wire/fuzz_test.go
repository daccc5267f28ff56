package wire

import (
	"errors"
	"reflect"
	"testing"
)

// typed is a payload decoded by its typed parser, with what re-encoding it
// needs.
type typed struct {
	Type     PayloadType
	Critical bool
	Value    any
}

// parseTyped decodes every payload of ps with its typed parser.
func parseTyped(ps []Payload) ([]typed, error) {
	out := make([]typed, 0, len(ps))
	for _, p := range ps {
		v, err := parseOne(p)
		if err != nil {
			return nil, err
		}
		out = append(out, typed{Type: p.Type, Critical: p.Critical, Value: v})
	}
	return out, nil
}

func parseOne(p Payload) (any, error) {
	switch p.Type {
	case PayloadSA:
		ps, err := ParseSA(nil, p.Body)
		// Re-encoding drops attributes hike does not understand.
		for i := range ps {
			for j := range ps[i].Transforms {
				ps[i].Transforms[j].Unsupported = false
			}
		}
		return ps, err
	case PayloadKE:
		return ParseKE(p.Body)
	case PayloadIDi, PayloadIDr:
		id, err := ParseID(p.Type, p.Body)
		if err == nil {
			// Raw keeps the reserved octets as received, which AUTH must
			// cover and Append zeroes; only Type and Data round-trip.
			if &id.Raw[0] != &p.Body[0] || len(id.Raw) != len(p.Body) {
				return nil, errors.New("ID.Raw is not the payload body")
			}
			id.Raw = nil
		}
		return id, err
	case PayloadCERT:
		return ParseCert(p.Body)
	case PayloadCERTREQ:
		return ParseCertReq(p.Body)
	case PayloadAUTH:
		return ParseAuth(p.Body)
	case PayloadNonce:
		return ParseNonce(p.Body)
	case PayloadNotify:
		n, err := ParseNotify(p.Body)
		if err == nil {
			err = checkNotifyAccessor(&n)
		}
		return n, err
	case PayloadDelete:
		d, err := ParseDelete(p.Body)
		if err == nil && d.SPISize == 4 {
			for i := 0; i < int(d.Count); i++ {
				_ = d.SPI(i)
			}
		}
		return d, err
	case PayloadVendor:
		return ParseVendorID(p.Body)
	case PayloadTSi, PayloadTSr:
		return ParseTS(nil, p.Type, p.Body)
	case PayloadCP:
		return ParseCP(nil, p.Body)
	case PayloadEAP:
		return ParseEAP(p.Body)
	case PayloadSK, PayloadSKF:
		return ParseEncrypted(p)
	}
	return nil, errors.New("parseOne: unexpected payload type " + p.Type.String())
}

// checkNotifyAccessor holds ParseNotify to its promise: a notify it accepts
// decodes with the accessor for its type.
func checkNotifyAccessor(n *Notify) error {
	var err error
	switch n.Type {
	case IKEV2_MESSAGE_ID_SYNC:
		_, err = n.MessageIDSync()
	case IPSEC_REPLAY_COUNTER_SYNC:
		_, err = n.ReplayCounterSync()
	case COOKIE:
		_, err = n.Cookie()
	case NAT_DETECTION_SOURCE_IP, NAT_DETECTION_DESTINATION_IP:
		_, err = n.NATDetection()
	case SIGNATURE_HASH_ALGORITHMS:
		var a [4]uint16
		_, err = n.SignatureHashAlgorithms(a[:0])
	case SET_WINDOW_SIZE:
		_, err = n.WindowSize()
	case INVALID_MESSAGE_ID:
		_, err = n.InvalidMessageID()
	case INVALID_KE_PAYLOAD:
		_, err = n.InvalidKEGroup()
	case UNSUPPORTED_CRITICAL_PAYLOAD:
		_, err = n.UnsupportedCriticalPayload()
	case REKEY_SA:
		_, _, err = n.RekeySA()
	}
	if err != nil {
		return errors.New("accessor rejects a notify ParseNotify accepted: " + err.Error())
	}
	return nil
}

// appendTyped re-encodes ts with each kind's Append function.
func appendTyped(w *Builder, ts []typed) {
	for _, t := range ts {
		if e, ok := t.Value.(Encrypted); ok {
			var b []byte
			if e.Type == PayloadSK {
				b = w.StartSK(e.Next)
			} else {
				b = w.StartSKF(e.Next, e.Number, e.Total)
			}
			w.End(append(b, e.Data...))
			continue
		}
		b := w.Start(t.Type, t.Critical)
		switch v := t.Value.(type) {
		case []Proposal:
			b = AppendSA(b, v)
		case KE:
			b = v.Append(b)
		case ID:
			b = v.Append(b)
		case Cert:
			b = v.Append(b)
		case CertReq:
			b = v.Append(b)
		case Auth:
			b = v.Append(b)
		case []byte: // Nonce, Vendor ID
			b = append(b, v...)
		case Notify:
			b = v.Append(b)
		case Delete:
			b = v.Append(b)
		case []TrafficSelector:
			b = AppendTS(b, v)
		case CP:
			b = v.Append(b)
		case EAP:
			b = v.Append(b)
		}
		w.End(b)
	}
}

// sameTyped compares two decodings, ignoring the critical bit of SK and SKF
// (their builders never set it).
func sameTyped(a, b []typed) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || !reflect.DeepEqual(a[i].Value, b[i].Value) {
			return false
		}
		if a[i].Type != PayloadSK && a[i].Type != PayloadSKF && a[i].Critical != b[i].Critical {
			return false
		}
	}
	return true
}

func wantWireError(t *testing.T, err error) {
	t.Helper()
	var we *Error
	if !errors.As(err, &we) {
		t.Fatalf("error is not a *wire.Error: %v", err)
	}
	switch we.Notify {
	case INVALID_SYNTAX, INVALID_MAJOR_VERSION:
	case UNSUPPORTED_CRITICAL_PAYLOAD:
		if we.Payload.known() {
			t.Fatalf("UNSUPPORTED_CRITICAL_PAYLOAD for known type %v", we.Payload)
		}
	default:
		t.Fatalf("unexpected notify %v", we.Notify)
	}
}

// checkChain round-trips a bare chain (an SK payload's plaintext).
func checkChain(t *testing.T, first PayloadType, b []byte) {
	ps, err := ParseChain(nil, first, b)
	if err != nil {
		wantWireError(t, err)
		return
	}
	ts, err := parseTyped(ps)
	if err != nil {
		wantWireError(t, err)
		return
	}
	var w Builder
	w.ResetChain(nil)
	appendTyped(&w, ts)
	re := w.Finish()
	ps2, err := ParseChain(nil, w.First(), re)
	if err != nil {
		t.Fatalf("re-encoded chain does not parse: %v\n%x", err, re)
	}
	ts2, err := parseTyped(ps2)
	if err != nil {
		t.Fatalf("re-encoded payloads do not parse: %v\n%x", err, re)
	}
	if !sameTyped(ts, ts2) {
		t.Fatalf("chain round trip differs:\n%+v\n%+v", ts, ts2)
	}
}

func FuzzMessage(f *testing.F) {
	for _, m := range seedMessages() {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if err := m.Parse(b); err != nil {
			wantWireError(t, err)
			return
		}
		if len(m.Raw) != int(m.Header.Length) {
			t.Fatalf("Raw is %d octets, header says %d", len(m.Raw), m.Header.Length)
		}
		ts, err := parseTyped(m.Payloads)
		if err != nil {
			wantWireError(t, err)
			return
		}
		e, ok, err := m.Encrypted()
		if err != nil {
			t.Fatalf("Encrypted fails after its payload parsed: %v", err)
		}
		if ok {
			if aad := e.AAD(m.Raw); len(aad)+len(e.Data) != len(m.Raw) {
				t.Fatal("AAD and Data do not tile the message")
			}
			// Treat the ciphertext as plaintext: it reaches the inner
			// parsers the way a decrypted chain would.
			if e.Type == PayloadSK {
				checkChain(t, e.Next, e.Data)
			}
		}

		h := m.Header
		var w Builder
		w.Reset(nil, h)
		appendTyped(&w, ts)
		re := w.Finish()
		var m2 Message
		if err := m2.Parse(re); err != nil {
			t.Fatalf("re-encoded message does not parse: %v\n%x", err, re)
		}
		ts2, err := parseTyped(m2.Payloads)
		if err != nil {
			t.Fatalf("re-encoded payloads do not parse: %v\n%x", err, re)
		}
		h2 := m2.Header
		// Skipped unknown payloads change the length and possibly the
		// first payload's type; everything else must survive.
		h.Length, h2.Length, h.NextPayload, h2.NextPayload = 0, 0, 0, 0
		if h != h2 {
			t.Fatalf("header round trip: %+v != %+v", h, h2)
		}
		if len(ts) > 0 && m2.Header.NextPayload != ts[0].Type {
			t.Fatalf("header names %v, first payload is %v", m2.Header.NextPayload, ts[0].Type)
		}
		if !sameTyped(ts, ts2) {
			t.Fatalf("round trip differs:\n%+v\n%+v", ts, ts2)
		}
	})
}

// FuzzPayloads feeds one payload body to the typed parser its type selects
// and round-trips what parses.
func FuzzPayloads(f *testing.F) {
	for _, msg := range seedMessages() {
		var m Message
		if err := m.Parse(msg); err != nil {
			f.Fatal(err)
		}
		for _, p := range m.Payloads {
			f.Add(uint8(p.Type), uint8(p.Next), p.Body)
		}
	}
	_, inner := ikeAuthInner(nil)
	ps, err := ParseChain(nil, PayloadIDi, inner)
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range ps {
		f.Add(uint8(p.Type), uint8(0), p.Body)
	}
	f.Fuzz(func(t *testing.T, typ, next uint8, body []byte) {
		p := Payload{Type: PayloadType(typ), Body: body}
		if !p.Type.known() || len(body) > 0xffff-GenericHeaderLen {
			return
		}
		if p.Type == PayloadSK || p.Type == PayloadSKF {
			p.Next = PayloadType(next)
		}
		v, err := parseOne(p)
		if err != nil {
			wantWireError(t, err)
			return
		}
		var w Builder
		w.ResetChain(nil)
		appendTyped(&w, []typed{{Type: p.Type, Value: v}})
		ps, err := ParseChain(nil, p.Type, w.Finish())
		if err != nil || len(ps) != 1 {
			t.Fatalf("re-encoded %v does not parse: %v", p.Type, err)
		}
		v2, err := parseOne(ps[0])
		if err != nil {
			t.Fatalf("re-encoded %v body does not parse: %v", p.Type, err)
		}
		if !reflect.DeepEqual(v, v2) {
			t.Fatalf("%v round trip:\n%+v\n%+v", p.Type, v, v2)
		}
	})
}

// The seeds must be valid, or the fuzzers start from rejected input.
func TestSeedMessagesParse(t *testing.T) {
	for i, msg := range seedMessages() {
		var m Message
		if err := m.Parse(msg); err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		if _, err := parseTyped(m.Payloads); err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		if e, ok, _ := m.Encrypted(); ok && e.Type == PayloadSK && e.Next != PayloadNone {
			// The fake SK payloads carry their plaintext between a
			// 16-octet IV and a 16-octet ICV.
			ps, err := ParseChain(nil, e.Next, e.Data[16:len(e.Data)-16])
			if err != nil {
				t.Fatalf("seed %d inner: %v", i, err)
			}
			if _, err := parseTyped(ps); err != nil {
				t.Fatalf("seed %d inner: %v", i, err)
			}
		}
	}
}
