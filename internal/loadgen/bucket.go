package loadgen

import "time"

// tokenBucket paces initiations: tokens accrue at rate per second up to
// burst, and each initiation takes one. The burst is small (a twentieth of
// a second's worth) so that a ramp at R/s looks like R/s at any scale a
// responder's queues notice.
type tokenBucket struct {
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate float64, now time.Time) *tokenBucket {
	burst := max(1, rate/20)
	// Start with one token, not a full bucket: the first burst would
	// otherwise arrive ahead of the configured rate.
	return &tokenBucket{rate: rate, burst: burst, tokens: 1, last: now}
}

// take grants up to want tokens at now. With none available it returns
// 0 and how long until the next one.
func (b *tokenBucket) take(now time.Time, want int) (int, time.Duration) {
	if dt := now.Sub(b.last); dt > 0 {
		b.tokens = min(b.burst, b.tokens+dt.Seconds()*b.rate)
		b.last = now
	}
	n := min(int(b.tokens), want)
	if n > 0 {
		b.tokens -= float64(n)
		return n, 0
	}
	wait := time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
	return 0, max(wait, time.Microsecond)
}
