package loadgen

import (
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"
)

// exactQuantile is nearest rank over sorted values, computed independently
// of the histogram.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	r := int(q*float64(len(sorted)) + 0.999999999)
	r = max(r, 1)
	return sorted[r-1]
}

func TestHistogramQuantilesWithinPrecision(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := map[string]func() time.Duration{
		"uniform 0-10ms":  func() time.Duration { return time.Duration(rng.Int64N(int64(10 * time.Millisecond))) },
		"exponential 2ms": func() time.Duration { return time.Duration(rng.ExpFloat64() * float64(2*time.Millisecond)) },
		"bimodal":         func() time.Duration { return []time.Duration{300 * time.Microsecond, 2 * time.Second}[rng.IntN(2)] },
		"sub-64µs":        func() time.Duration { return time.Duration(rng.Int64N(64)) * time.Microsecond },
	}
	for name, gen := range cases {
		t.Run(name, func(t *testing.T) {
			var h Histogram
			vals := make([]time.Duration, 20000)
			for i := range vals {
				vals[i] = gen()
				h.Record(vals[i])
			}
			sort.Slice(vals, func(a, b int) bool { return vals[a] < vals[b] })
			for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
				want := exactQuantile(vals, q)
				got := h.Quantile(q)
				// 1/64 relative plus the 1 µs truncation of the bucket index.
				tol := time.Duration(float64(want)/64) + time.Microsecond
				if d := got - want; d > tol || d < -tol {
					t.Errorf("q=%v: got %v, want %v ± %v", q, got, want, tol)
				}
			}
			if h.Max() != vals[len(vals)-1] {
				t.Errorf("max %v, want %v", h.Max(), vals[len(vals)-1])
			}
			if h.Count() != uint64(len(vals)) {
				t.Errorf("count %d", h.Count())
			}
		})
	}
}

func TestHistogramEdges(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Count() != 0 {
		t.Fatal("empty histogram must report zero")
	}
	h.Record(-time.Second)
	if got := h.Quantile(0.99); got != 0 {
		t.Fatalf("negative duration recorded as %v", got)
	}
	var big Histogram
	big.Record(100 * time.Hour * 24 * 365)
	if big.Quantile(1) <= 0 {
		t.Fatal("a duration past the range must still count")
	}
	var one Histogram
	one.Record(1234567 * time.Microsecond)
	if got := one.Quantile(0.5); got > 1234567*time.Microsecond || got < 1234567*time.Microsecond*63/64 {
		t.Fatalf("single value reported as %v", got)
	}
}

func TestBucketsContiguous(t *testing.T) {
	prev := -1
	for us := uint64(0); us < 1<<20; us++ {
		b := bucketOf(us)
		if b != prev && b != prev+1 {
			t.Fatalf("bucket jumps from %d to %d at %d µs", prev, b, us)
		}
		if v := bucketValue(b); v < float64(us)-float64(us)/64-1 || v > float64(us)+float64(us)/64+1 {
			t.Fatalf("%d µs lands in bucket %d valued %v", us, b, v)
		}
		prev = b
	}
}

func TestHistogramConcurrent(t *testing.T) {
	var h Histogram
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				h.Record(time.Duration(i) * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	if h.Count() != 8000 || h.Max() != 999*time.Millisecond {
		t.Fatalf("count %d max %v", h.Count(), h.Max())
	}
}

func TestRecordAllocationFree(t *testing.T) {
	var h Histogram
	if n := testing.AllocsPerRun(1000, func() { h.Record(3 * time.Millisecond) }); n != 0 {
		t.Fatalf("Record allocates %v times", n)
	}
}

func TestTokenBucketPaces(t *testing.T) {
	start := time.Unix(1000, 0)
	b := newTokenBucket(200, start)
	// Drive it with a fake clock for 10 s, asking greedily and sleeping
	// exactly as told: the grant must track 200/s.
	now := start
	granted := 0
	for now.Before(start.Add(10 * time.Second)) {
		n, wait := b.take(now, 1<<30)
		granted += n
		if n == 0 {
			if wait <= 0 {
				t.Fatal("no token and no wait")
			}
			now = now.Add(wait)
		}
	}
	if granted < 1995 || granted > 2011 {
		t.Fatalf("granted %d in 10 s at 200/s", granted)
	}
}

func TestTokenBucketBurstBounded(t *testing.T) {
	start := time.Unix(1000, 0)
	b := newTokenBucket(1000, start)
	// A long pause does not bank more than the burst (1000/20).
	n, _ := b.take(start.Add(time.Hour), 1<<30)
	if n != 50 {
		t.Fatalf("granted %d after a pause, want the burst of 50", n)
	}
	if n, wait := b.take(start.Add(time.Hour), 1); n != 0 || wait < 900*time.Microsecond || wait > 1100*time.Microsecond {
		t.Fatalf("empty bucket: %d tokens, wait %v; want 0 and 1 ms", n, wait)
	}
	// want caps the grant.
	if n, _ := b.take(start.Add(time.Hour+time.Second), 7); n != 7 {
		t.Fatalf("granted %d of 7 wanted", n)
	}
	// A slow rate still grants its first token at once.
	s := newTokenBucket(0.5, start)
	if n, _ := s.take(start, 5); n != 1 {
		t.Fatalf("slow bucket granted %d at start", n)
	}
	if _, wait := s.take(start, 1); wait != 2*time.Second {
		t.Fatalf("slow bucket wait %v, want 2s", wait)
	}
}
