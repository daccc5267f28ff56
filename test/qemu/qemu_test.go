// Package qemu drives test/qemu/run.sh from go test, so that the kernel
// data-plane tests run with the rest of the suite on hosts whose kernel
// lacks ESP. The work happens in run.sh; see its header.
package qemu

import (
	"bytes"
	"os"
	"os/exec"
	"path"
	"strings"
	"testing"
)

// TestKernelDataPlane boots Debian's stock kernel under qemu and runs the
// XFRM backend's kernel tests there, among them two hike daemons with the
// kernel data plane. Each guest test becomes a subtest named
// package/TestName, so its result and output read like any other Go
// test's. It takes tens of seconds (minutes on the first run, which
// downloads the kernel), so -short skips it. Under CI=true missing
// prerequisites fail the test instead of skipping it.
func TestKernelDataPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	missing := func(why string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kernel data-plane tests cannot run: %s", why)
		}
		t.Skipf("kernel data-plane tests skipped: %s (they fail instead under CI=true)", why)
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil && os.Getenv("CI") != "true" {
		// Under CI run.sh installs it; elsewhere do not install packages behind the developer's back.
		missing("qemu-system-x86_64 not installed (apt-get install qemu-system-x86, or run test/qemu/run.sh once)")
	}
	var out bytes.Buffer
	cmd := exec.Command("bash", "run.sh")
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	pkgs := parseGuest(out.String())
	for _, p := range pkgs {
		t.Run(path.Base(p.name), func(t *testing.T) {
			for _, g := range p.tests {
				t.Run(g.name, func(t *testing.T) {
					for _, l := range g.lines {
						t.Log(strings.TrimPrefix(l, "    ")) // t.Log indents again
					}
					switch g.result {
					case "PASS":
					case "SKIP":
						t.Skip("skipped in the guest")
					case "FAIL":
						t.Fail()
					default:
						t.Error("no result: the guest stopped during this test")
					}
				})
			}
			if !p.ok {
				t.Errorf("guest: %s", p.summary)
			}
		})
	}
	for _, line := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		if strings.HasPrefix(line, "# hike-qemu") {
			t.Log(line)
		}
	}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 2 {
			t.Fatalf("harness setup failed (exit 2); full output:\n%s", out.String())
		}
		if len(pkgs) == 0 {
			t.Fatalf("no guest test result (%v); full output:\n%s", err, out.String())
		}
		t.Fatalf("kernel data-plane tests failed: %v", err)
	}
}

type guestTest struct {
	name   string
	result string // PASS, FAIL, SKIP, or empty when the guest stopped
	lines  []string
}

type guestPkg struct {
	name    string
	ok      bool
	summary string
	tests   []*guestTest
}

// parseGuest splits run.sh's output, which is the guest's `go test -v`
// output of each package followed by run.sh's "ok"/"FAIL" line for it,
// into packages and their top-level tests.
func parseGuest(out string) []*guestPkg {
	var pkgs []*guestPkg
	var tests []*guestTest
	var cur *guestTest
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "=== RUN   ") && !strings.Contains(line, "/"):
			cur = &guestTest{name: strings.TrimPrefix(line, "=== RUN   ")}
			tests = append(tests, cur)
		case strings.HasPrefix(line, "ok  \t"), strings.HasPrefix(line, "FAIL\t"):
			f := strings.Split(line, "\t")
			pkgs = append(pkgs, &guestPkg{name: f[1], ok: strings.HasPrefix(line, "ok"), summary: line, tests: tests})
			tests, cur = nil, nil
		case cur != nil:
			for _, r := range []string{"PASS", "FAIL", "SKIP"} {
				if strings.HasPrefix(line, "--- "+r+": "+cur.name+" ") {
					cur.result = r
				}
			}
			// The binary's closing PASS/FAIL belongs to no test.
			if line != "PASS" && line != "FAIL" {
				cur.lines = append(cur.lines, line)
			}
		}
	}
	return pkgs
}

func TestParseGuest(t *testing.T) {
	out := strings.Join([]string{
		"# hike-qemu: prepared in 5.0s",
		"=== RUN   TestA",
		"    a_test.go:1: hello",
		"=== RUN   TestA/sub",
		"--- PASS: TestA (0.10s)",
		"    --- PASS: TestA/sub (0.05s)",
		"=== RUN   TestB",
		"--- FAIL: TestB (1.00s)",
		"FAIL",
		"FAIL\texample.com/p/one\t1.2s",
		"=== RUN   TestC",
		"    c_test.go:9: stuck",
		"FAIL\texample.com/p/two\t(no result: guest stopped)",
	}, "\n")
	pkgs := parseGuest(out)
	if len(pkgs) != 2 || pkgs[0].name != "example.com/p/one" || pkgs[0].ok || pkgs[1].name != "example.com/p/two" {
		t.Fatalf("packages %+v", pkgs)
	}
	one := pkgs[0].tests
	if len(one) != 2 || one[0].name != "TestA" || one[0].result != "PASS" || one[1].result != "FAIL" {
		t.Fatalf("tests of one: %+v %+v", one[0], one[1])
	}
	if len(one[0].lines) != 4 || one[0].lines[0] != "    a_test.go:1: hello" {
		t.Fatalf("TestA's lines %q", one[0].lines)
	}
	if two := pkgs[1].tests; len(two) != 1 || two[0].result != "" || len(two[0].lines) != 1 {
		t.Fatalf("a test the guest did not finish: %+v", two)
	}
}
