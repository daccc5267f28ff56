package loadgen

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram records durations for percentiles without locks or
// allocations: Record runs on the engine's workers, tens of thousands of
// times a second, and must never stall them.
//
// Buckets are log-linear over microseconds: exact below 64 µs, then 64
// buckets per power of two, so any reported percentile is within 1/64
// (1.6%) of a recorded value. The range reaches 2^40 µs (12 days).
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64 // nanoseconds
}

const (
	subBits     = 6
	subBuckets  = 1 << subBits
	maxShift    = 34
	histBuckets = (maxShift + 2) * subBuckets
)

// bucketOf maps microseconds to a bucket index.
func bucketOf(us uint64) int {
	if us < subBuckets {
		return int(us)
	}
	shift := bits.Len64(us) - subBits - 1
	if shift > maxShift {
		return histBuckets - 1
	}
	return (shift+1)*subBuckets + int(us>>shift) - subBuckets
}

// bucketValue returns the middle of bucket i in microseconds.
func bucketValue(i int) float64 {
	if i < subBuckets {
		return float64(i)
	}
	shift := i/subBuckets - 1
	lo := uint64(i%subBuckets+subBuckets) << shift
	return float64(lo) + float64(uint64(1)<<shift-1)/2
}

// Record adds one duration; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	d = max(d, 0)
	h.counts[bucketOf(uint64(d/time.Microsecond))].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// Count returns the number of recorded durations.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Max returns the largest recorded duration, exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Quantile returns the duration below or at which a fraction q of the
// recorded values lie (nearest rank), 0 when nothing was recorded. Read
// while Record runs, it sees a consistent-enough snapshot: each bucket is
// read once.
func (h *Histogram) Quantile(q float64) time.Duration {
	var counts [histBuckets]uint64
	var total uint64
	for i := range h.counts {
		counts[i] = h.counts[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(total)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			d := time.Duration(bucketValue(i) * float64(time.Microsecond))
			// The middle of the top bucket may lie above every value in it.
			return min(d, h.Max())
		}
	}
	return h.Max()
}
