package loadgen

import (
	"strings"
	"testing"
)

// FuzzParsers: the argument parsers and the /proc reader take any input
// without panicking, and what they accept is usable.
func FuzzParsers(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "10.0.0.1:4500", "[2001:db8::1]:500", "200/s", "6000/min", "1e308",
		"10.201.0.0/16,192.0.2.7", "::ffff:10.0.0.0/104", "5", "500ms", "client%d.load", "%05d@x", "%%%d", "%",
		"1 (a) S 1 2 3 4 5 6 7 8 9 10 11 12", ")", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ap, err := ParseTarget(s); err == nil && !ap.IsValid() {
			t.Fatalf("ParseTarget(%q) accepted an invalid address", s)
		}
		if r, err := ParseRate(s); err == nil && !(r > 0) {
			t.Fatalf("ParseRate(%q) = %v", s, r)
		}
		if d, err := ParseDuration(s); err == nil && d < 0 {
			t.Fatalf("ParseDuration(%q) = %v", s, d)
		}
		if ps, err := ParseSources(s); err == nil {
			for _, p := range ps {
				if !p.IsValid() {
					t.Fatalf("ParseSources(%q) gave %v", s, p)
				}
			}
			sourceAddrs(ps, 16)
		}
		if oneIntVerb(s) && !strings.Contains(s, "%") {
			t.Fatalf("oneIntVerb(%q) without a verb", s)
		}
		clientID(s, 7)
		if v, err := parseStatCPU([]byte(s)); err == nil && v < 0 {
			t.Fatalf("parseStatCPU(%q) = %v", s, v)
		}
	})
}
