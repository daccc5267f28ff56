package esp

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
)

// Errors returned by this package. They are plain values so that the packet
// path can return them without allocating; test with errors.Is.
var (
	// ErrSeqExhausted means the sequence number space of the SA is used up
	// (RFC 4303 §3.3.3 forbids cycling the counter): rekey the SA. Counter
	// moves for RFC 6311 that would go past the end return it too.
	ErrSeqExhausted = errors.New("esp: sequence number space exhausted, rekey the SA")
	// ErrSeqBackwards means a counter move would have gone backwards, which
	// would reuse sequence numbers and, for the AEADs, nonces.
	ErrSeqBackwards = errors.New("esp: sequence number cannot move backwards")
	// ErrReplay means the packet's sequence number was already received or
	// lies below the replay window.
	ErrReplay = errors.New("esp: replayed or too old sequence number")
	// ErrAuth means the Integrity Check Value did not verify.
	ErrAuth = errors.New("esp: integrity check failed")
	// ErrMalformed means the packet is too short or its length does not fit
	// the SA's transform.
	ErrMalformed = errors.New("esp: malformed packet")
	// ErrPadding means an authenticated packet carried padding that is not
	// the default 1, 2, 3, ... sequence (RFC 4303 §2.4) or a pad length
	// that does not fit.
	ErrPadding = errors.New("esp: invalid padding")
	// ErrWrongSPI means the packet belongs to another SA.
	ErrWrongSPI = errors.New("esp: SPI does not match the SA")
	// ErrDirection means Seal was called on an inbound SA or Open on an
	// outbound one.
	ErrDirection = errors.New("esp: operation does not match the SA's direction")
)

// Direction says whether an SA protects traffic we send or traffic we receive.
type Direction uint8

// SA directions.
const (
	Outbound Direction = iota + 1
	Inbound
)

// DefaultReplayWindow is the replay window size used when Config.ReplayWindow
// is zero. A data plane with several workers reorders packets far more than
// the 64 that RFC 4303 §3.4.3 prefers; RFC 6479 explains why large windows are
// cheap with a ring of blocks.
const DefaultReplayWindow = 1024

// MaxReplayWindow bounds the window, and with it the per-SA memory
// (MaxReplayWindow/8 bytes).
const MaxReplayWindow = 1 << 20

// NoNextHeader is the Next Header value of a dummy packet (RFC 4303 §2.6).
// Open returns such packets like any other; the caller drops them.
const NoNextHeader = 59

// Config describes one ESP SA. The keys are copied into the cipher state by
// NewSA; the caller may wipe its copy afterwards.
type Config struct {
	SPI       uint32
	Direction Direction
	Encr      EncrID
	// EncrKey is the encryption keying material exactly as taken from
	// KEYMAT (RFC 7296 §2.17): for the AEADs the key followed by the 4-octet
	// salt.
	EncrKey  []byte
	Integ    IntegID
	IntegKey []byte
	// ESN enables 64-bit Extended Sequence Numbers (RFC 4303 §2.2.1).
	ESN bool
	// ReplayWindow is the inbound replay window in packets: a multiple of 64,
	// at least 64. Zero means DefaultReplayWindow. Ignored for outbound SAs.
	ReplayWindow int
	// SoftLimit is the outbound sequence number at which OnSoftLimit fires,
	// so the daemon can rekey before the hard end. Zero means three quarters
	// of the sequence space.
	SoftLimit uint64
	// OnSoftLimit, if set, is called once, from the Seal call that first
	// uses a sequence number at or above SoftLimit (or from a counter move
	// that jumps past it). It runs on the data path: it should only hand the
	// event to the control plane.
	OnSoftLimit func()
}

// String describes the SA without key material, so that logging a Config
// cannot leak keys.
func (c Config) String() string {
	dir := "inbound"
	if c.Direction == Outbound {
		dir = "outbound"
	}
	return fmt.Sprintf("esp.Config{SPI: %#08x, %s, %v, %v, ESN: %t}", c.SPI, dir, c.Encr, c.Integ, c.ESN)
}

// ReplayState is the inbound replay window in a form that does not depend on
// the window's internal layout, for replication to other cluster members and
// for RFC 6311 synchronisation.
type ReplayState struct {
	// Top is the highest sequence number received (full 64 bits with ESN);
	// 0 means none yet.
	Top uint64
	// Bitmap bit k (word k/64, bit k%64) says whether Top-k was received,
	// for k below the window size.
	Bitmap []uint64
}

// Stats are the SA's counters since creation.
type Stats struct {
	Packets      uint64 // packets sealed or opened successfully
	Bytes        uint64 // inner packet bytes of those packets
	ReplayDrops  uint64
	AuthFailures uint64
	Malformed    uint64 // short packets, bad lengths, bad padding
}

// SA is one direction of an ESP security association. See the package
// documentation for which methods may run concurrently.
type SA struct {
	spi    uint32
	dir    Direction
	esn    bool
	maxSeq uint64
	suite  suite
	icv    int
	hdrLen int // SPI, sequence number, IV

	// Outbound: the last sequence number used; the next packet gets oseq+1.
	oseq        atomic.Uint64
	softLimit   uint64
	onSoftLimit func()
	softFired   atomic.Bool

	// Inbound.
	mu  sync.Mutex
	win window

	packets, bytes, replayDrops, authFailures, malformed atomic.Uint64

	// Scratch owned by the single Seal or Open caller.
	nonce  [saltLen + aeadIVLen]byte
	aad    [12]byte
	sum    [64]byte
	ivBuf  [16]byte
	icvBuf [32]byte
	seqHi  [4]byte
}

// NewSA validates cfg and builds the SA.
func NewSA(cfg Config) (*SA, error) {
	if cfg.Direction != Outbound && cfg.Direction != Inbound {
		return nil, fmt.Errorf("esp: invalid direction %d", cfg.Direction)
	}
	if cfg.SPI == 0 {
		// RFC 4303 §2.1: SPI 0 is reserved for local use and never sent.
		return nil, fmt.Errorf("esp: SPI 0 is reserved")
	}
	st, err := newSuite(&cfg)
	if err != nil {
		return nil, err
	}
	s := &SA{
		spi:         cfg.SPI,
		dir:         cfg.Direction,
		esn:         cfg.ESN,
		maxSeq:      math.MaxUint32,
		suite:       st,
		icv:         st.icvSize(),
		hdrLen:      8 + st.ivLen,
		softLimit:   cfg.SoftLimit,
		onSoftLimit: cfg.OnSoftLimit,
	}
	if cfg.ESN {
		s.maxSeq = math.MaxUint64
	}
	if s.softLimit == 0 {
		s.softLimit = s.maxSeq - s.maxSeq/4
	}
	if cfg.Direction == Inbound {
		w := cfg.ReplayWindow
		if w == 0 {
			w = DefaultReplayWindow
		}
		if w < 64 || w%64 != 0 || w > MaxReplayWindow {
			return nil, fmt.Errorf("esp: replay window must be a multiple of 64 between 64 and %d, got %d", MaxReplayWindow, w)
		}
		s.win = newWindow(uint64(w))
	}
	return s, nil
}

// SPI returns the SA's Security Parameters Index.
func (s *SA) SPI() uint32 { return s.spi }

// HeaderLen is the number of octets Seal writes before the inner packet: SPI,
// sequence number and IV. A caller that places the inner packet at this
// offset of a buffer b and seals into b[:0] encrypts in place.
func (s *SA) HeaderLen() int { return s.hdrLen }

// SealedLen returns the length of the ESP packet that Seal produces for an
// inner packet of n octets, so callers can size buffers and stay
// allocation-free.
func (s *SA) SealedLen(n int) int {
	return s.hdrLen + s.paddedLen(n) + s.icv
}

func (s *SA) paddedLen(n int) int {
	a := s.suite.align
	return (n + 2 + a - 1) / a * a
}

// Seal encapsulates innerPacket with the given Next Header value (4 for IPv4,
// 41 for IPv6 in tunnel mode) and appends the ESP packet to dst. dst may
// overlap innerPacket in any way; the zero-copy layout is described at
// HeaderLen.
//
// Each call consumes one sequence number. When the sequence space is used up
// Seal returns ErrSeqExhausted and the SA has to be replaced by a rekey.
func (s *SA) Seal(dst, innerPacket []byte, nextHeader byte) ([]byte, error) {
	if s.dir != Outbound {
		return dst, ErrDirection
	}
	seq, err := s.nextSeq()
	if err != nil {
		return dst, err
	}
	var iv []byte
	if s.suite.aead == nil {
		iv = s.ivBuf[:s.suite.ivLen]
		if _, err := rand.Read(iv); err != nil {
			return dst, err
		}
	}
	out := s.seal(dst, innerPacket, nextHeader, seq, iv)
	s.packets.Add(1)
	s.bytes.Add(uint64(len(innerPacket)))
	return out, nil
}

// nextSeq reserves the next outbound sequence number. A compare-and-swap
// rather than an add keeps the counter from ever passing maxSeq, even while
// the control plane moves it concurrently.
func (s *SA) nextSeq() (uint64, error) {
	for {
		cur := s.oseq.Load()
		if cur >= s.maxSeq {
			return 0, ErrSeqExhausted
		}
		if s.oseq.CompareAndSwap(cur, cur+1) {
			s.checkSoftLimit(cur + 1)
			return cur + 1, nil
		}
	}
}

func (s *SA) checkSoftLimit(seq uint64) {
	if seq >= s.softLimit && !s.softFired.Load() && !s.softFired.Swap(true) && s.onSoftLimit != nil {
		s.onSoftLimit()
	}
}

// seal builds the packet for a given sequence number. iv is the CBC IV, or,
// for the AEADs, nil to use the sequence number (a known-answer test passes
// the published IV instead).
func (s *SA) seal(dst, inner []byte, nh byte, seq uint64, iv []byte) []byte {
	padded := s.paddedLen(len(inner))
	ret, out := sliceForAppend(dst, s.hdrLen+padded+s.icv)
	// Move the inner packet first: it may overlap the header area of dst.
	pt := out[s.hdrLen : s.hdrLen+padded]
	copy(pt, inner)
	padLen := padded - len(inner) - 2
	for i := range padLen {
		pt[len(inner)+i] = byte(i + 1) // RFC 4303 §2.4 default padding
	}
	pt[padded-2] = byte(padLen)
	pt[padded-1] = nh
	binary.BigEndian.PutUint32(out[0:4], s.spi)
	binary.BigEndian.PutUint32(out[4:8], uint32(seq))

	if s.suite.aead != nil {
		if iv == nil {
			binary.BigEndian.PutUint64(out[8:16], seq)
		} else {
			copy(out[8:16], iv)
		}
		nonce := s.aeadNonce(out[8:16])
		s.suite.aead.Seal(pt[:0], nonce, pt, s.aeadAAD(seq))
		return ret
	}

	copy(out[8:s.hdrLen], iv)
	s.suite.cbcIV.SetIV(iv)
	s.suite.cbc.CryptBlocks(pt, pt)
	s.mac(out[:s.hdrLen+padded], seq, out[s.hdrLen+padded:])
	return ret
}

func (s *SA) aeadNonce(iv []byte) []byte {
	copy(s.nonce[:saltLen], s.suite.salt[:])
	copy(s.nonce[saltLen:], iv)
	return s.nonce[:]
}

// aeadAAD is SPI | Seq (8 octets), or SPI | Seq high | Seq low (12 octets)
// with ESN (RFC 4106 §5, RFC 7634 §2.1).
func (s *SA) aeadAAD(seq uint64) []byte {
	binary.BigEndian.PutUint32(s.aad[0:4], s.spi)
	if s.esn {
		binary.BigEndian.PutUint64(s.aad[4:12], seq)
		return s.aad[:12]
	}
	binary.BigEndian.PutUint32(s.aad[4:8], uint32(seq))
	return s.aad[:8]
}

// mac writes the truncated ICV of data into icv. With ESN the high-order 32
// bits of the sequence number are authenticated as if appended to the packet
// but are not transmitted (RFC 4303 §2.2.1, §3.3.2.1).
func (s *SA) mac(data []byte, seq uint64, icv []byte) {
	m := s.suite.mac
	m.Reset()
	m.Write(data)
	if s.esn {
		// A field, not a local: through the hash.Hash interface a local
		// array would escape and cost an allocation per packet.
		binary.BigEndian.PutUint32(s.seqHi[:], uint32(seq>>32))
		m.Write(s.seqHi[:])
	}
	copy(icv, m.Sum(s.sum[:0])[:s.icv])
}

// Open checks, authenticates and decrypts one ESP packet and appends the
// inner packet to dst, returning it with its Next Header value. dst may
// overlap espPacket in any way (espPacket[:0] decrypts in place); on error
// the contents of dst's spare capacity are undefined.
//
// The replay window is consulted before any cryptography, so replays are
// rejected cheaply, and updated only after the ICV verified (RFC 4303
// §3.4.3), so forged packets cannot move it. With ESN a packet from far below
// the window is taken to belong to the next 2^32 block (RFC 4303 A2.2) and
// fails with ErrAuth rather than ErrReplay.
//
// Dummy packets (nextHeader NoNextHeader) are returned like any other for
// the caller to drop. TFC padding (RFC 4303 §2.7) stays at the end of the
// inner packet; its IP header says where the packet really ends.
func (s *SA) Open(dst, espPacket []byte) (plain []byte, nextHeader byte, err error) {
	if s.dir != Inbound {
		return dst, 0, ErrDirection
	}
	ctLen := len(espPacket) - s.hdrLen - s.icv
	if ctLen < 2 || ctLen%s.suite.align != 0 {
		// RFC 4303 §2.4 requires 4-octet alignment of the trailer for every
		// transform; CBC needs whole blocks anyway.
		s.malformed.Add(1)
		return dst, 0, ErrMalformed
	}
	if binary.BigEndian.Uint32(espPacket[0:4]) != s.spi {
		s.malformed.Add(1)
		return dst, 0, ErrWrongSPI
	}
	lo := binary.BigEndian.Uint32(espPacket[4:8])

	s.mu.Lock()
	seq, ok := uint64(lo), true
	if s.esn {
		seq, ok = s.win.inferSeq(lo)
	}
	if ok && s.win.check(seq) != fresh {
		ok = false
	}
	s.mu.Unlock()
	if !ok {
		s.replayDrops.Add(1)
		return dst, 0, ErrReplay
	}

	room := ctLen
	if s.suite.aead != nil {
		room += s.icv // the tag is decrypted in place along with the payload
	}
	ret, out := sliceForAppend(dst, room)
	if s.suite.aead != nil {
		nonce := s.aeadNonce(espPacket[8:16])
		aad := s.aeadAAD(seq)
		// Copy before decrypting in place: the AEAD refuses partially
		// overlapping buffers, and dst may overlap espPacket anywhere.
		sealed := out[:ctLen+s.icv]
		copy(sealed, espPacket[s.hdrLen:])
		if _, err := s.suite.aead.Open(sealed[:0], nonce, sealed, aad); err != nil {
			s.authFailures.Add(1)
			return dst, 0, ErrAuth
		}
	} else {
		icv := s.icvBuf[:s.icv]
		want := espPacket[len(espPacket)-s.icv:]
		s.mac(espPacket[:len(espPacket)-s.icv], seq, icv)
		if subtle.ConstantTimeCompare(icv, want) != 1 {
			s.authFailures.Add(1)
			return dst, 0, ErrAuth
		}
		iv := s.ivBuf[:s.suite.ivLen]
		copy(iv, espPacket[8:s.hdrLen])
		copy(out, espPacket[s.hdrLen:s.hdrLen+ctLen])
		s.suite.cbcIV.SetIV(iv)
		s.suite.cbc.CryptBlocks(out[:ctLen], out[:ctLen])
	}

	// The trailer is authenticated, so checking it is no padding oracle.
	pt := out[:ctLen]
	padLen := int(pt[ctLen-2])
	nh := pt[ctLen-1]
	n := ctLen - 2 - padLen
	if n < 0 || !defaultPadding(pt[n:ctLen-2]) {
		s.malformed.Add(1)
		return dst, 0, ErrPadding
	}

	s.mu.Lock()
	v := s.win.checkAndMark(seq)
	s.mu.Unlock()
	if v != fresh {
		// The control plane moved the window while we were decrypting.
		s.replayDrops.Add(1)
		return dst, 0, ErrReplay
	}
	s.packets.Add(1)
	s.bytes.Add(uint64(n))
	return ret[:len(dst)+n], nh, nil
}

func defaultPadding(pad []byte) bool {
	for i, b := range pad {
		if b != byte(i+1) {
			return false
		}
	}
	return true
}

// OutboundSeq returns the last outbound sequence number used (0 before the
// first packet); the next packet carries OutboundSeq()+1.
func (s *SA) OutboundSeq() uint64 { return s.oseq.Load() }

// SetOutboundSeq makes seq the last outbound sequence number used, so the
// next packet carries seq+1. A cluster member taking over an SA sets it to the
// replicated high-water mark. Moving backwards fails with ErrSeqBackwards;
// seq equal to the current value is a no-op. Past the end of the sequence
// space it fails with ErrSeqExhausted: rekey instead.
func (s *SA) SetOutboundSeq(seq uint64) error {
	if s.dir != Outbound {
		return ErrDirection
	}
	if seq > s.maxSeq {
		return ErrSeqExhausted
	}
	for {
		cur := s.oseq.Load()
		if seq < cur {
			return ErrSeqBackwards
		}
		if s.oseq.CompareAndSwap(cur, seq) {
			s.checkSoftLimit(seq)
			return nil
		}
	}
}

// AdvanceOutboundSeq skips delta sequence numbers, as the peer side of RFC
// 6311 does on IPSEC_REPLAY_COUNTER_SYNC (§5.2). It fails with
// ErrSeqExhausted, leaving the counter unchanged, if that would pass the end
// of the sequence space.
func (s *SA) AdvanceOutboundSeq(delta uint64) error {
	if s.dir != Outbound {
		return ErrDirection
	}
	for {
		cur := s.oseq.Load()
		if delta > s.maxSeq-cur {
			return ErrSeqExhausted
		}
		if s.oseq.CompareAndSwap(cur, cur+delta) {
			s.checkSoftLimit(cur + delta)
			return nil
		}
	}
}

// ReplayState returns a copy of the inbound replay window.
func (s *SA) ReplayState() ReplayState {
	if s.dir != Inbound {
		return ReplayState{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.win.state()
}

// SetReplayState merges st into the inbound window: the window's top becomes
// the larger of the two tops and every sequence number marked in either is
// marked afterwards. Sequence numbers at or below st.Top that st.Bitmap does
// not cover count as received. So a merge can only make the window stricter:
// restoring a replicated state onto a fresh SA reproduces it, and restoring
// an older snapshot onto a live SA is harmless.
//
// For a non-ESN SA, st.Top beyond 2^32-1 fails with ErrSeqExhausted.
func (s *SA) SetReplayState(st ReplayState) error {
	if s.dir != Inbound {
		return ErrDirection
	}
	if st.Top > s.maxSeq {
		return ErrSeqExhausted
	}
	s.mu.Lock()
	s.win.merge(st)
	s.mu.Unlock()
	return nil
}

// AdvanceReplayWindow moves the top of the inbound window forward by delta
// and treats every sequence number up to the new top as received: the member
// taking over an SA only has a replicated, possibly stale copy of the window,
// and the failed member may have accepted any number up to old top + delta,
// in any order. Afterwards numbers at or below new top - window fall below
// the window, the rest up to new top are marked, and only numbers above the
// new top are accepted. This is the local half of sending
// IPSEC_REPLAY_COUNTER_SYNC with the same delta (RFC 6311 §5.2).
//
// For a non-ESN SA, a new top beyond 2^32-1 fails with ErrSeqExhausted and
// leaves the window unchanged: the SA has to be rekeyed.
func (s *SA) AdvanceReplayWindow(delta uint64) error {
	if s.dir != Inbound {
		return ErrDirection
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if delta > s.maxSeq-s.win.top {
		return ErrSeqExhausted
	}
	s.win.merge(ReplayState{Top: s.win.top + delta})
	return nil
}

// Stats returns a snapshot of the SA's counters.
func (s *SA) Stats() Stats {
	return Stats{
		Packets:      s.packets.Load(),
		Bytes:        s.bytes.Load(),
		ReplayDrops:  s.replayDrops.Load(),
		AuthFailures: s.authFailures.Load(),
		Malformed:    s.malformed.Load(),
	}
}

// sliceForAppend extends in by n bytes, reallocating only if its capacity
// is too small, and returns the whole slice and the n new bytes.
func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	tail = head[len(in):]
	return
}
