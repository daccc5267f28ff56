package wire

// IANA "Internet Key Exchange Version 2 (IKEv2) Parameters" registry values
// used by hike. Names follow the registry so that grepping an RFC finds them.

// ExchangeType is the IKE header's Exchange Type (RFC 7296 §3.1).
type ExchangeType uint8

const (
	IKE_SA_INIT     ExchangeType = 34
	IKE_AUTH        ExchangeType = 35
	CREATE_CHILD_SA ExchangeType = 36
	INFORMATIONAL   ExchangeType = 37
)

func (e ExchangeType) String() string {
	switch e {
	case IKE_SA_INIT:
		return "IKE_SA_INIT"
	case IKE_AUTH:
		return "IKE_AUTH"
	case CREATE_CHILD_SA:
		return "CREATE_CHILD_SA"
	case INFORMATIONAL:
		return "INFORMATIONAL"
	}
	return "EXCHANGE(" + itoa(uint64(e)) + ")"
}

// PayloadType is a Next Payload value (RFC 7296 §3.2, RFC 7383 §2.5).
type PayloadType uint8

const (
	PayloadNone    PayloadType = 0
	PayloadSA      PayloadType = 33
	PayloadKE      PayloadType = 34
	PayloadIDi     PayloadType = 35
	PayloadIDr     PayloadType = 36
	PayloadCERT    PayloadType = 37
	PayloadCERTREQ PayloadType = 38
	PayloadAUTH    PayloadType = 39
	PayloadNonce   PayloadType = 40
	PayloadNotify  PayloadType = 41
	PayloadDelete  PayloadType = 42
	PayloadVendor  PayloadType = 43
	PayloadTSi     PayloadType = 44
	PayloadTSr     PayloadType = 45
	PayloadSK      PayloadType = 46
	PayloadCP      PayloadType = 47
	PayloadEAP     PayloadType = 48
	PayloadSKF     PayloadType = 53
)

var payloadNames = [...]string{
	0: "SA", PayloadKE - PayloadSA: "KE", PayloadIDi - PayloadSA: "IDi",
	PayloadIDr - PayloadSA: "IDr", PayloadCERT - PayloadSA: "CERT", PayloadCERTREQ - PayloadSA: "CERTREQ",
	PayloadAUTH - PayloadSA: "AUTH", PayloadNonce - PayloadSA: "Nonce", PayloadNotify - PayloadSA: "N",
	PayloadDelete - PayloadSA: "D", PayloadVendor - PayloadSA: "V", PayloadTSi - PayloadSA: "TSi",
	PayloadTSr - PayloadSA: "TSr", PayloadSK - PayloadSA: "SK", PayloadCP - PayloadSA: "CP",
	PayloadEAP - PayloadSA: "EAP",
}

func (p PayloadType) String() string {
	switch {
	case p == PayloadNone:
		return "none"
	case p == PayloadSKF:
		return "SKF"
	case p >= PayloadSA && p <= PayloadEAP:
		return payloadNames[p-PayloadSA]
	}
	return "PAYLOAD(" + itoa(uint64(p)) + ")"
}

// known reports whether hike can parse payloads of this type. An unknown
// payload is skipped unless its critical bit is set (RFC 7296 §2.5).
func (p PayloadType) known() bool {
	return (p >= PayloadSA && p <= PayloadEAP) || p == PayloadSKF
}

// Flags are the IKE header flags (RFC 7296 §3.1).
type Flags uint8

const (
	FlagInitiator Flags = 0x08
	FlagVersion   Flags = 0x10
	FlagResponse  Flags = 0x20
)

// ProtocolID identifies the protocol of an SA in proposals, notifies and
// deletes (RFC 7296 §3.3.1).
type ProtocolID uint8

const (
	ProtoNone ProtocolID = 0
	ProtoIKE  ProtocolID = 1
	ProtoAH   ProtocolID = 2
	ProtoESP  ProtocolID = 3
)

// TransformType is the type of a transform substructure (RFC 7296 §3.3.2).
type TransformType uint8

const (
	TransformENCR  TransformType = 1
	TransformPRF   TransformType = 2
	TransformINTEG TransformType = 3
	TransformDH    TransformType = 4
	TransformESN   TransformType = 5
)

// Transform IDs. Only the ones hike implements or must recognise are named.
const (
	ENCR_3DES              uint16 = 3
	ENCR_NULL              uint16 = 11
	ENCR_AES_CBC           uint16 = 12
	ENCR_AES_CTR           uint16 = 13
	ENCR_AES_CCM_8         uint16 = 14
	ENCR_AES_CCM_12        uint16 = 15
	ENCR_AES_CCM_16        uint16 = 16
	ENCR_AES_GCM_8         uint16 = 18
	ENCR_AES_GCM_12        uint16 = 19
	ENCR_AES_GCM_16        uint16 = 20
	ENCR_CHACHA20_POLY1305 uint16 = 28

	PRF_HMAC_SHA1     uint16 = 2
	PRF_AES128_XCBC   uint16 = 4
	PRF_HMAC_SHA2_256 uint16 = 5
	PRF_HMAC_SHA2_384 uint16 = 6
	PRF_HMAC_SHA2_512 uint16 = 7
	PRF_AES128_CMAC   uint16 = 8

	AUTH_NONE              uint16 = 0
	AUTH_HMAC_SHA1_96      uint16 = 2
	AUTH_AES_XCBC_96       uint16 = 5
	AUTH_HMAC_SHA2_256_128 uint16 = 12
	AUTH_HMAC_SHA2_384_192 uint16 = 13
	AUTH_HMAC_SHA2_512_256 uint16 = 14

	DH_NONE       uint16 = 0
	DH_MODP_2048  uint16 = 14
	DH_MODP_3072  uint16 = 15
	DH_MODP_4096  uint16 = 16
	DH_ECP_256    uint16 = 19
	DH_ECP_384    uint16 = 20
	DH_ECP_521    uint16 = 21
	DH_CURVE25519 uint16 = 31
	DH_CURVE448   uint16 = 32

	ESN_NO  uint16 = 0
	ESN_YES uint16 = 1
)

// AttrKeyLength is the only transform attribute RFC 7296 defines (§3.3.5);
// it is always sent in TV format.
const AttrKeyLength uint16 = 14

// IDType is an Identification payload's ID Type (RFC 7296 §3.5).
type IDType uint8

const (
	ID_IPV4_ADDR   IDType = 1
	ID_FQDN        IDType = 2
	ID_RFC822_ADDR IDType = 3
	ID_IPV6_ADDR   IDType = 5
	ID_DER_ASN1_DN IDType = 9
	ID_DER_ASN1_GN IDType = 10
	ID_KEY_ID      IDType = 11
)

// AuthMethod is an AUTH payload's Auth Method (RFC 7296 §3.8, RFC 7427).
type AuthMethod uint8

const (
	AuthRSASig     AuthMethod = 1
	AuthSharedKey  AuthMethod = 2
	AuthDSSSig     AuthMethod = 3
	AuthECDSA256   AuthMethod = 9
	AuthECDSA384   AuthMethod = 10
	AuthECDSA521   AuthMethod = 11
	AuthDigitalSig AuthMethod = 14
	AuthNULL       AuthMethod = 13
)

// CertEncoding is a CERT/CERTREQ payload's encoding (RFC 7296 §3.6).
type CertEncoding uint8

const (
	CertX509Signature CertEncoding = 4
	CertX509CRL       CertEncoding = 7
	CertHashURLX509   CertEncoding = 12
)

// TSType is a traffic selector's type (RFC 7296 §3.13.1).
type TSType uint8

const (
	TS_IPV4_ADDR_RANGE TSType = 7
	TS_IPV6_ADDR_RANGE TSType = 8
)

// CFGType is a Configuration payload's CFG Type (RFC 7296 §3.15).
type CFGType uint8

const (
	CFG_REQUEST CFGType = 1
	CFG_REPLY   CFGType = 2
	CFG_SET     CFGType = 3
	CFG_ACK     CFGType = 4
)

// Configuration attribute types (RFC 7296 §3.15.1).
const (
	INTERNAL_IP4_ADDRESS uint16 = 1
	INTERNAL_IP4_NETMASK uint16 = 2
	INTERNAL_IP4_DNS     uint16 = 3
	INTERNAL_IP4_NBNS    uint16 = 4
	INTERNAL_IP4_DHCP    uint16 = 6
	APPLICATION_VERSION  uint16 = 7
	INTERNAL_IP6_ADDRESS uint16 = 8
	INTERNAL_IP6_DNS     uint16 = 10
	INTERNAL_IP6_DHCP    uint16 = 12
	INTERNAL_IP4_SUBNET  uint16 = 13
	SUPPORTED_ATTRIBUTES uint16 = 14
	INTERNAL_IP6_SUBNET  uint16 = 15
)

// Hash algorithm identifiers for SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4,
// RFC 8420 for Identity).
const (
	HashSHA1     uint16 = 1
	HashSHA2_256 uint16 = 2
	HashSHA2_384 uint16 = 3
	HashSHA2_512 uint16 = 4
	HashIdentity uint16 = 5
)

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}
