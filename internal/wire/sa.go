package wire

// Transform is one transform substructure of a proposal (RFC 7296 §3.3.2).
// KeyLen is the Key Length attribute in bits (§3.3.5), 0 when absent.
type Transform struct {
	Type   TransformType
	ID     uint16
	KeyLen uint16
}

// Proposal is one proposal substructure of an SA payload (RFC 7296 §3.3.1).
// SPI aliases the parsed buffer: empty in IKE_SA_INIT, 8 octets for an IKE
// SA rekey, 4 octets for ESP and AH.
type Proposal struct {
	Num        uint8
	Protocol   ProtocolID
	SPI        []byte
	Transforms []Transform
}
