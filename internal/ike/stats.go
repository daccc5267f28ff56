package ike

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hike-vpn/hike/internal/wire"
)

// Stats are the engine's counters. They are plain atomics so that the
// packet path pays one atomic add per event and the metrics layer reads
// snapshots without locks.
type Stats struct {
	Malformed     atomic.Uint64
	UnknownSPI    atomic.Uint64
	QueueDrops    atomic.Uint64
	IntegrityFail atomic.Uint64
	Retransmits   atomic.Uint64
	RetransmitsIn atomic.Uint64 // retransmitted requests answered from the cache
	CookiesSent   atomic.Uint64
	DPDSent       atomic.Uint64
	DPDTimeouts   atomic.Uint64
	Established   atomic.Int64
	SyncsSent     atomic.Uint64
	SyncsAnswered atomic.Uint64
	SyncsDropped  atomic.Uint64
	// SyncsDone and SyncsFailed count cluster-role procedures that ended.
	SyncsDone   atomic.Uint64
	SyncsFailed atomic.Uint64

	// Exchanges counts completed exchanges by type (index: type-34), role
	// (0 initiator, 1 responder) and result (0 ok, 1 failed).
	Exchanges [4][2][2]atomic.Uint64
}

// Stats returns the engine's counters.
func (e *Engine) Stats() *Stats { return &e.stats }

func (s *Stats) exchange(t wire.ExchangeType, responder, failed bool) {
	i := int(t) - int(wire.IKE_SA_INIT)
	if i < 0 || i >= len(s.Exchanges) {
		return
	}
	r, f := 0, 0
	if responder {
		r = 1
	}
	if failed {
		f = 1
	}
	s.Exchanges[i][r][f].Add(1)
}

// rateLimiter is a token bucket for log lines caused by unauthenticated
// input, so that a flood of garbage cannot flood the log.
type rateLimiter struct {
	mu     sync.Mutex
	tokens float64
	max    float64
	rate   float64 // tokens per second
	last   time.Time
}

func (r *rateLimiter) init(perSecond int) {
	r.max, r.rate, r.tokens = float64(perSecond), float64(perSecond), float64(perSecond)
	r.last = time.Now()
}

func (r *rateLimiter) allow() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	r.tokens = min(r.max, r.tokens+now.Sub(r.last).Seconds()*r.rate)
	r.last = now
	if r.tokens < 1 {
		return false
	}
	r.tokens--
	return true
}

// logID names an SA in logs the way operators read it: both SPIs in hex.
func (sa *SA) logID() string {
	return strconv.FormatUint(sa.spiI, 16) + "_i/" + strconv.FormatUint(sa.spiR, 16) + "_r"
}

func (e *Engine) limitedInfo(msg string, args ...any) {
	if e.logLimit.allow() {
		e.log.Info(msg, args...)
	}
}
