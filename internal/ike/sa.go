package ike

import (
	"net/netip"
	"sync"
	"time"

	"github.com/hike-vpn/hike/internal/crypto"
	"github.com/hike-vpn/hike/internal/msgsync"
	"github.com/hike-vpn/hike/internal/wire"
)

// State is where an IKE SA is in its life.
type State uint8

const (
	// StateInit: IKE_SA_INIT sent (initiator) or answered (responder).
	StateInit State = iota + 1
	// StateAuth: IKE_AUTH sent, waiting for the response (initiator only).
	StateAuth
	// StateEstablished: authenticated; Child SAs may exist.
	StateEstablished
	// StateDeleting: a Delete for the IKE SA is in flight.
	StateDeleting
	// StateDead: removed from the table; late references see this.
	StateDead
)

func (s State) String() string {
	switch s {
	case StateInit:
		return "init"
	case StateAuth:
		return "auth"
	case StateEstablished:
		return "established"
	case StateDeleting:
		return "deleting"
	case StateDead:
		return "dead"
	}
	return "unknown"
}

// Extensions are what the two ends negotiated beyond RFC 7296. They are part
// of the SA record, and an IKE SA rekey inherits them.
type Extensions struct {
	Fragmentation bool `json:"fragmentation"` // RFC 7383, both sent IKEV2_FRAGMENTATION_SUPPORTED
	MIDSync       bool `json:"mid_sync"`      // RFC 6311, both sent IKEV2_MESSAGE_ID_SYNC_SUPPORTED
	ReplaySync    bool `json:"replay_sync"`   // RFC 6311, both sent IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED
	SigHash       bool `json:"sig_hash"`      // RFC 7427, the peer sent SIGNATURE_HASH_ALGORITHMS
	NATLocal      bool `json:"nat_local"`     // we are behind a NAT: send keepalives
	NATRemote     bool `json:"nat_remote"`    // the peer is behind a NAT: follow its address
}

// SA is one IKE SA with its Child SAs. All fields are guarded by mu; the
// engine holds it for the whole of one message's processing, so an exchange
// runs start to finish without interleaving with another on the same SA.
type SA struct {
	mu    sync.Mutex
	timer timerNode

	spiI, spiR  uint64
	initiator   bool // we are the original initiator (after rekey: its initiator)
	state       State
	conn        *Conn
	local       netip.AddrPort
	remote      netip.AddrPort
	created     time.Time
	established time.Time

	suite Suite
	keys  *crypto.IKEKeys
	sk    *crypto.SK
	ext   Extensions

	peerID wire.ID // Data is owned, not aliased
	vip    netip.Addr

	// Handshake material, dropped once the SA is established.
	hs *handshake

	// Message IDs (RFC 7296 §2.2). hike keeps one request of its own in
	// flight at a time, whatever window the peer offers: it is always
	// correct, and the engine's queue, not the window, orders local work.
	nextSend   uint32 // Message ID of our next request
	nextRecv   uint32 // Message ID we expect on the peer's next request
	peerWindow uint32
	out        *outstanding
	// sendMark and ivMark are the reservations last written to the state
	// file (Records), replSend and replIV those last handed to the cluster
	// (TakeChanges): the two copies age separately, and each must stay
	// ahead of what this node uses.
	sendMark uint32
	ivMark   uint64
	replSend uint32
	replIV   uint64
	queue    []exchange
	cache    responseCache
	reasm    *crypto.Reassembler // RFC 7383, only while a fragmented request arrives

	// Liveness and lifetimes.
	lastHeard time.Time // last authenticated message from the peer
	keepAt    time.Time // next NAT keepalive, when we are behind a NAT
	dpdAt     time.Time // next DPD probe, zero if DPD is off
	rekeyAt   time.Time
	expireAt  time.Time

	children []*ChildSA
	sync     msgsync.PeerState
	// resync is the cluster-role procedure (RFC 6311), running or last run.
	resync *resyncProc
	// needsSync marks an SA taken over or restored since its last sync: it
	// allows exactly one more procedure (RFC 6311 §7).
	needsSync bool
	// ikeCollision is set while the peer's rekey of this SA crosses ours.
	ikeCollision *ikeCollision
	// Replication (changes.go). dirty says the SA waits in the engine's
	// change list for a whole record, midsDirty for its Message IDs only
	// (an SA without RFC 6311 that only exchanged messages); replAt is when
	// its last replicated record was made,
	// taken the number of the TakeChanges call that made it. gone says its
	// deletion was reported, released that it was handed to another node
	// and must not be reported deleted.
	dirty     bool
	midsDirty bool
	gone      bool
	released  bool
	replAt    time.Time
	taken     uint64
	// After a takeover from a possibly stale record of an SA without RFC
	// 6311, the previous owner may have answered one more request of the
	// peer's (recvSlack) or had its own answered (sendSlack) than the
	// record shows; the first exchange in each direction settles it.
	recvSlack, sendSlack bool
	// onUp reports the outcome of an initiation to whoever asked for it.
	onUp  func(SAInfo, error)
	stats SAStats
}

// SAStats counts what happened on an IKE SA, for `hike sa show`.
type SAStats struct {
	Retransmits    uint32    `json:"retransmits"`
	DPDSent        uint32    `json:"dpd_sent"`
	DPDAnswered    uint32    `json:"dpd_answered"`
	SyncsAnswered  uint32    `json:"syncs_answered"`
	SyncsDropped   uint32    `json:"syncs_dropped"`
	LastSyncBefore [2]uint32 `json:"last_sync_before"` // next send, next recv before the last sync
	LastSyncAfter  [2]uint32 `json:"last_sync_after"`
}

// handshake is what IKE_SA_INIT leaves for IKE_AUTH to sign and check.
type handshake struct {
	ni, nr        []byte
	initMsg       []byte // our IKE_SA_INIT message (initiator: request, responder: response)
	peerInitMsg   []byte
	peerSigHashes []uint16
}

// outstanding is our request in flight: its octets (one datagram, or the
// fragments of one message) for bit-identical retransmission, and the
// exchange waiting for its response.
type outstanding struct {
	mid     uint32
	packets [][]byte
	x       exchange
	sent    time.Time
	tries   int
	next    time.Time
}

// responseCache holds the response to the peer's last request, to resend
// when the request is retransmitted (RFC 7296 §2.1). A retransmission is
// recognised by its Message ID and its ICV: the last octets of a protected
// message are a digest of the whole of it, so no hashing is needed.
type responseCache struct {
	mid     uint32
	valid   bool
	icv     [32]byte
	icvLen  uint8
	packets [][]byte
	at      time.Time
}

// Suite is the negotiated transform set of an IKE SA.
type Suite struct {
	Encr  *crypto.Encr
	PRF   *crypto.PRF
	Integ *crypto.Integ // nil with an AEAD
	DH    uint16
}

// LocalSPI is the SPI this end chose, under which the table holds the SA.
func (sa *SA) LocalSPI() uint64 {
	if sa.initiator {
		return sa.spiI
	}
	return sa.spiR
}

func (sa *SA) setLocalSPI(spi uint64) {
	if sa.initiator {
		sa.spiI = spi
	} else {
		sa.spiR = spi
	}
}

// PeerSPI is the SPI the peer chose.
func (sa *SA) PeerSPI() uint64 {
	if sa.initiator {
		return sa.spiR
	}
	return sa.spiI
}

// header returns the IKE header for a message we send on this SA.
func (sa *SA) header(x wire.ExchangeType, response bool, mid uint32) wire.Header {
	h := wire.Header{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: x, MessageID: mid}
	if sa.initiator {
		h.Flags |= wire.FlagInitiator
	}
	if response {
		h.Flags |= wire.FlagResponse
	}
	return h
}

// ChildSA is one pair of ESP SAs negotiated under an IKE SA.
type ChildSA struct {
	cfg       *ChildConfig
	reqID     uint32
	spiIn     uint32 // chosen by us
	spiOut    uint32 // chosen by the peer
	encr      uint16
	encrBits  uint16
	integ     uint16
	esn       bool
	localTS   []TrafficSelector
	remoteTS  []TrafficSelector
	installed bool
	created   time.Time
	rekeyAt   time.Time
	expireAt  time.Time
	state     childState
	keys      *childKeys
	// ourRekey is set while our own rekey of this SA is in flight, and
	// collision when the peer rekeyed it at the same time (§2.8.1).
	ourRekey  bool
	collision *rekeyCollision
	// outRate and inRate are packets per second as of ratedAt, known for a
	// Child SA restored from a record; RFC 6311 jumps are estimated from
	// them.
	outRate, inRate float64
	ratedAt         time.Time
	// replOut and replIn are the sequence numbers in the last replicated
	// record: TakeChanges re-records the SA when the data plane's differ.
	replOut, replIn uint64
}

type childState uint8

const (
	childInstalled childState = iota + 1
	childRekeying
	childDeleting
)
