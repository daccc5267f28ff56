package wire

import "encoding/binary"

// Delete is a view of a Delete payload (RFC 7296 §3.11). SPIs holds Count
// SPIs of SPISize octets each and aliases the parsed buffer. Deleting the
// IKE SA itself names no SPI: the header's SPIs identify it.
type Delete struct {
	Protocol ProtocolID
	SPISize  uint8
	Count    uint16
	SPIs     []byte
}

const deleteHeaderLen = 4

// ParseDelete decodes a Delete payload body. The SPI size must be 0 for IKE
// and 4 for AH and ESP, and the SPIs must fill the payload exactly.
func ParseDelete(body []byte) (Delete, error) {
	var d Delete
	if len(body) < deleteHeaderLen {
		return d, errSyntax(PayloadDelete, "truncated delete")
	}
	d.Protocol = ProtocolID(body[0])
	d.SPISize = body[1]
	d.Count = binary.BigEndian.Uint16(body[2:4])
	switch {
	case d.Protocol == ProtoIKE && d.SPISize == 0:
	case (d.Protocol == ProtoAH || d.Protocol == ProtoESP) && d.SPISize == 4:
	default:
		return Delete{}, errSyntax(PayloadDelete, "bad protocol or SPI size")
	}
	if len(body)-deleteHeaderLen != int(d.SPISize)*int(d.Count) {
		return Delete{}, errSyntax(PayloadDelete, "SPI count disagrees with length")
	}
	d.SPIs = body[deleteHeaderLen:]
	return d, nil
}

// SPI returns the i-th SPI of an AH or ESP delete as the big-endian integer
// the SA tables key on. i must be below Count.
func (d *Delete) SPI(i int) uint32 {
	return binary.BigEndian.Uint32(d.SPIs[4*i:])
}

// Append appends the Delete payload body to b. Count is written as given so
// that an IKE delete (no SPIs) keeps whatever count it was built with.
func (d *Delete) Append(b []byte) []byte {
	b = append(b, byte(d.Protocol), d.SPISize, byte(d.Count>>8), byte(d.Count))
	return append(b, d.SPIs...)
}

// AddDelete appends a Delete payload.
func (w *Builder) AddDelete(d Delete) {
	w.End(d.Append(w.Start(PayloadDelete, false)))
}

// AddDeleteIKE appends the Delete payload that deletes the IKE SA the
// message travels on (RFC 7296 §1.4.1).
func (w *Builder) AddDeleteIKE() {
	w.End(append(w.Start(PayloadDelete, false), byte(ProtoIKE), 0, 0, 0))
}

// AddDeleteChild appends a Delete payload naming Child SAs of protocol p
// (AH or ESP) by their inbound SPIs (RFC 7296 §1.4.1).
func (w *Builder) AddDeleteChild(p ProtocolID, spis ...uint32) {
	b := append(w.Start(PayloadDelete, false), byte(p), 4, byte(len(spis)>>8), byte(len(spis)))
	for _, s := range spis {
		b = binary.BigEndian.AppendUint32(b, s)
	}
	w.End(b)
}
