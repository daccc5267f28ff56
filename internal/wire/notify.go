package wire

import "encoding/binary"

// Notify is a view of a Notify payload (RFC 7296 §3.10). SPI and Data alias
// the parsed buffer.
type Notify struct {
	// Protocol is meaningful only when SPI is set; RFC 7296 §3.10 has it
	// sent as zero and ignored otherwise.
	Protocol ProtocolID
	SPI      []byte
	Type     NotifyType
	Data     []byte
}

const notifyHeaderLen = 4

// ParseNotify decodes a Notify payload body. For the notify types hike
// interprets it also checks the data length and SPI layout, so that a
// malformed one is answered with INVALID_SYNTAX before any state is touched;
// the typed accessors (MessageIDSync, Cookie, ...) then only decode.
func ParseNotify(body []byte) (Notify, error) {
	var n Notify
	if len(body) < notifyHeaderLen {
		return n, errSyntax(PayloadNotify, "truncated notify")
	}
	spiSize := int(body[1])
	switch spiSize {
	case 0, 4, 8:
	default:
		return n, errSyntax(PayloadNotify, "bad SPI size")
	}
	if notifyHeaderLen+spiSize > len(body) {
		return n, errSyntax(PayloadNotify, "SPI beyond payload")
	}
	n.Protocol = ProtocolID(body[0])
	n.Type = NotifyType(binary.BigEndian.Uint16(body[2:4]))
	n.SPI = body[notifyHeaderLen : notifyHeaderLen+spiSize : notifyHeaderLen+spiSize]
	n.Data = body[notifyHeaderLen+spiSize:]
	if err := n.check(); err != nil {
		return Notify{}, err
	}
	return n, nil
}

// Append appends the Notify payload body to b.
func (n *Notify) Append(b []byte) []byte {
	b = appendNotifyHeader(b, n.Protocol, n.SPI, n.Type)
	return append(b, n.Data...)
}

func appendNotifyHeader(b []byte, p ProtocolID, spi []byte, t NotifyType) []byte {
	b = append(b, byte(p), byte(len(spi)), byte(t>>8), byte(t))
	return append(b, spi...)
}

// AddNotify appends a Notify payload.
func (w *Builder) AddNotify(n Notify) {
	w.End(n.Append(w.Start(PayloadNotify, false)))
}

// StartNotify opens a Notify payload and returns the buffer its data must be
// appended to (for example by MessageIDSync.Append); close it with End.
func (w *Builder) StartNotify(p ProtocolID, spi []byte, t NotifyType) []byte {
	return appendNotifyHeader(w.Start(PayloadNotify, false), p, spi, t)
}

// AddError appends the notify a parse error owes the sender (see Error),
// without the allocation of NotifyData.
func (w *Builder) AddError(e *Error) {
	b := w.StartNotify(ProtoNone, nil, e.Notify)
	if e.Notify == UNSUPPORTED_CRITICAL_PAYLOAD {
		b = append(b, byte(e.Payload))
	}
	w.End(b)
}
