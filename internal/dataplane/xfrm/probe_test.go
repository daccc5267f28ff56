package xfrm

import (
	"errors"
	"os"
	"strings"
	"testing"

	dp "github.com/hike-vpn/hike/internal/dataplane"
)

// TestProbe runs the kernel probe on whatever kernel runs the test. On a
// kernel without ESP (this project's CI host) the error must say so in
// words an operator can act on; under the qemu harness (HIKE_EXPECT_ESP=1)
// the probe must succeed.
func TestProbe(t *testing.T) {
	err := Probe()
	if os.Getenv("HIKE_EXPECT_ESP") == "1" {
		if err != nil {
			t.Fatalf("Probe on a kernel with ESP: %v", err)
		}
		return
	}
	if err == nil {
		t.Log("this kernel can create ESP SAs")
		return
	}
	t.Logf("Probe: %v", err)
	if errors.Is(err, dp.ErrNoKernelESP) {
		for _, want := range []string{"ESP", "CONFIG_INET_ESP", "adding a test"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("probe error %q does not mention %q", err, want)
			}
		}
		_, serr := dp.Select(dp.KindXFRM, Probe)
		if serr == nil || !strings.Contains(serr.Error(), "xfrm data plane unavailable: kernel has no ESP support (CONFIG_INET_ESP)") ||
			!strings.Contains(serr.Error(), "use dataplane: userspace") {
			t.Errorf("Select(xfrm) error = %v", serr)
		}
		s, serr := dp.Select(dp.KindAuto, Probe)
		if serr != nil || s.Kind != dp.KindUserspace {
			t.Errorf("Select(auto) = %+v, %v; want userspace", s, serr)
		}
		return
	}
	if os.Getuid() != 0 && os.Getenv("CI") != "true" {
		t.Skipf("probe needs root: %v", err)
	}
	t.Fatalf("Probe failed for a reason other than missing ESP: %v", err)
}
