package wire

import "encoding/binary"

// Builder appends a payload chain, optionally behind an IKE header, to a
// caller's buffer. Each Next Payload octet names the payload after it, so the
// builder patches the previous one whenever a payload starts and patches
// lengths when it ends. A zero Builder is not usable; call Reset or
// ResetChain.
//
// Typical use on the hot path, without allocating:
//
//	var w wire.Builder
//	w.Reset(buf[:0], hdr)
//	w.AddNotify(wire.Notify{Type: wire.IKEV2_MESSAGE_ID_SYNC, Data: d[:]})
//	msg := w.Finish()
type Builder struct {
	buf   []byte
	hdr   int // offset of the IKE header, -1 for a bare chain
	next  int // offset of the Next Payload octet the next payload must fill
	cur   int // offset of the open payload's generic header, -1 if none
	first PayloadType
}

// Reset starts a message with header h at the end of buf. h.Length and
// h.NextPayload are filled in by Finish.
func (w *Builder) Reset(buf []byte, h Header) {
	h.NextPayload = PayloadNone
	w.hdr = len(buf)
	w.buf = h.Append(buf)
	w.next = w.hdr + 16
	w.cur = -1
	w.first = PayloadNone
}

// ResetChain starts a bare payload chain (for example the plaintext inside an
// SK payload) at the end of buf.
func (w *Builder) ResetChain(buf []byte) {
	w.hdr = -1
	w.buf = buf
	w.next = -1
	w.cur = -1
	w.first = PayloadNone
}

// Start opens a payload of type t and returns the buffer its body must be
// appended to; hand the grown buffer back with End.
func (w *Builder) Start(t PayloadType, critical bool) []byte {
	w.end()
	if w.next >= 0 {
		w.buf[w.next] = byte(t)
	}
	if w.first == PayloadNone {
		w.first = t
	}
	w.cur = len(w.buf)
	w.next = w.cur
	w.buf = AppendPayloadHeader(w.buf, PayloadNone, critical, 0)
	return w.buf
}

// End closes the payload opened by Start with its body appended to b.
func (w *Builder) End(b []byte) {
	w.buf = b
	w.end()
}

func (w *Builder) end() {
	if w.cur < 0 {
		return
	}
	binary.BigEndian.PutUint16(w.buf[w.cur+2:], uint16(len(w.buf)-w.cur))
	w.cur = -1
}

// Add appends a payload whose body is already encoded.
func (w *Builder) Add(t PayloadType, body []byte) {
	w.End(append(w.Start(t, false), body...))
}

// First returns the type of the first payload of the chain, which the
// enclosing header or SK payload must name.
func (w *Builder) First() PayloadType { return w.first }

// Len returns the number of octets appended since Reset, including the
// header.
func (w *Builder) Len() int {
	if w.hdr < 0 {
		return len(w.buf)
	}
	return len(w.buf) - w.hdr
}

// Finish closes the last payload, fills the header's length and returns the
// whole buffer (including whatever preceded the message in it).
func (w *Builder) Finish() []byte {
	w.end()
	if w.hdr >= 0 {
		binary.BigEndian.PutUint32(w.buf[w.hdr+24:], uint32(len(w.buf)-w.hdr))
	}
	return w.buf
}
