package wire

import (
	"bytes"
	"errors"
	"testing"
)

func TestBuilderChainRoundTrip(t *testing.T) {
	h := Header{SPIi: 0x0102030405060708, SPIr: 0x1112131415161718, Exchange: INFORMATIONAL,
		Flags: FlagInitiator, MessageID: 7}
	var w Builder
	w.Reset(make([]byte, 0, 128), h)
	w.Add(PayloadNonce, []byte{1, 2, 3, 4})
	w.Add(PayloadVendor, []byte("hike"))
	msg := w.Finish()

	var m Message
	if err := m.Parse(msg); err != nil {
		t.Fatal(err)
	}
	if m.Header.Length != uint32(len(msg)) || m.Header.NextPayload != PayloadNonce ||
		m.Header.SPIi != h.SPIi || m.Header.SPIr != h.SPIr || m.Header.MessageID != 7 ||
		m.Header.Exchange != INFORMATIONAL || !m.Header.IsInitiator() || m.Header.IsResponse() {
		t.Fatalf("header mismatch: %+v", m.Header)
	}
	if len(m.Payloads) != 2 || m.Payloads[0].Type != PayloadNonce || m.Payloads[1].Type != PayloadVendor ||
		!bytes.Equal(m.Payloads[1].Body, []byte("hike")) {
		t.Fatalf("payloads: %+v", m.Payloads)
	}
}

func TestParseChainUnknownPayloads(t *testing.T) {
	// An unknown non-critical payload (type 200) between two known ones is
	// skipped; the same payload with the critical bit set rejects the message
	// with UNSUPPORTED_CRITICAL_PAYLOAD naming type 200 (RFC 7296 §2.5).
	chain := func(critical byte) []byte {
		return []byte{
			200, 0, 0, 5, 0xaa, // Nonce (first), next = 200
			byte(PayloadVendor), critical, 0, 6, 1, 2, // unknown 200, next = V
			0, 0, 0, 4, // V, empty
		}
	}
	ps, err := ParseChain(nil, PayloadNonce, chain(0))
	if err != nil || len(ps) != 2 || ps[0].Type != PayloadNonce || ps[1].Type != PayloadVendor {
		t.Fatalf("non-critical: %v %+v", err, ps)
	}
	_, err = ParseChain(nil, PayloadNonce, chain(0x80))
	var we *Error
	if !errors.As(err, &we) || we.Notify != UNSUPPORTED_CRITICAL_PAYLOAD || !bytes.Equal(we.NotifyData(), []byte{200}) {
		t.Fatalf("critical: %v", err)
	}
}

func TestParseRejectsMalformed(t *testing.T) {
	var w Builder
	w.Reset(nil, Header{SPIi: 1, Exchange: IKE_SA_INIT})
	w.Add(PayloadNonce, make([]byte, 16))
	good := w.Finish()

	cases := map[string]func([]byte) []byte{
		"short":              func(b []byte) []byte { return b[:20] },
		"length beyond data": func(b []byte) []byte { b[27]++; return b },
		"payload too long":   func(b []byte) []byte { b[31] = 0xff; return b },
		"payload too short":  func(b []byte) []byte { b[31] = 3; return b },
		"trailing octets":    func(b []byte) []byte { b = append(b, 0); b[27]++; return b },
	}
	for name, mutate := range cases {
		b := mutate(append([]byte(nil), good...))
		var m Message
		err := m.Parse(b)
		var we *Error
		if !errors.As(err, &we) || we.Notify != INVALID_SYNTAX {
			t.Errorf("%s: got %v, want INVALID_SYNTAX", name, err)
		}
	}
	v3 := append([]byte(nil), good...)
	v3[17] = 0x30
	var m Message
	var we *Error
	if err := m.Parse(v3); !errors.As(err, &we) || we.Notify != INVALID_MAJOR_VERSION {
		t.Errorf("major version 3: got %v", err)
	}
}

func TestEncryptedPayloadMustBeLast(t *testing.T) {
	b := []byte{
		byte(PayloadNotify), 0, 0, 6, 9, 9, // SK, names inner N
		0, 0, 0, 4, // an outer payload after SK
	}
	if _, err := ParseChain(nil, PayloadSK, b); err == nil {
		t.Fatal("payload after SK accepted")
	}
	ps, err := ParseChain(nil, PayloadSK, b[:6])
	if err != nil || len(ps) != 1 || ps[0].Next != PayloadNotify {
		t.Fatalf("SK alone: %v %+v", err, ps)
	}
}

func TestMessageParseDoesNotAllocate(t *testing.T) {
	var w Builder
	w.Reset(nil, Header{SPIi: 1, SPIr: 2, Exchange: INFORMATIONAL, MessageID: 3})
	for i := 0; i < 12; i++ {
		w.Add(PayloadNotify, []byte{0, 0, 0x40, 0x00})
	}
	msg := w.Finish()
	var m Message
	allocs := testing.AllocsPerRun(100, func() {
		if err := m.Parse(msg); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Parse allocated %v times", allocs)
	}
}
