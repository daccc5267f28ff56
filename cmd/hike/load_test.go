package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runLoad(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, _, err := runLoadStderr(t, args...)
	return out, err
}

func runLoadStderr(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCmd()
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(append([]string{"load"}, args...))
	err := cmd.Execute()
	return out.String(), errOut.String(), err
}

func TestLoadBadArgumentsSayWhatIsExpected(t *testing.T) {
	_, err := runLoad(t, "--target", "gw.example", "--rate", "fast", "--dpd", "soon", "--hold", "-1s", "--sources", "10.0.0.0/99")
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"--target", "expected ADDR or ADDR:PORT", "--rate", "per second", "--dpd", "5s", "--hold",
		"--sources", "CIDR", "--psk-file FILE or --psk-env VAR"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	t.Setenv("HIKE_LOAD_TEST_PSK", "")
	if _, err := runLoad(t, "--target", "10.0.0.1", "--psk-env", "HIKE_LOAD_TEST_PSK"); err == nil || !strings.Contains(err.Error(), "unset or empty") {
		t.Errorf("empty PSK variable: %v", err)
	}
	psk := filepath.Join(t.TempDir(), "psk")
	os.WriteFile(psk, []byte("a key\n"), 0o600)
	if _, err := runLoad(t, "--target", "10.0.0.1", "--psk-file", psk, "--psk-env", "X"); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("two PSK sources: %v", err)
	}
	if _, err := runLoad(t, "--target", "10.0.0.1", "--psk-file", psk, "--clients", "0", "--id-fmt", "x"); err == nil ||
		!strings.Contains(err.Error(), "at least 1") || !strings.Contains(err.Error(), "exactly one %d") {
		t.Errorf("bad clients and id-fmt: %v", err)
	}
}

func TestReadPSKTrimsTheNewline(t *testing.T) {
	f := filepath.Join(t.TempDir(), "psk")
	os.WriteFile(f, []byte("secret with space \r\n"), 0o600)
	got, err := readPSK(f, "")
	if err != nil || string(got) != "secret with space " {
		t.Fatalf("readPSK = %q, %v", got, err)
	}
}

// TestLoadJSONOnLoopback runs the command end to end against nothing:
// every client stays pending, and --json prints a summary that says so.
func TestLoadJSONOnLoopback(t *testing.T) {
	t.Setenv("HIKE_LOAD_TEST_PSK", "a pre-shared key")
	out, err := runLoad(t, "--target", "127.0.0.1:9", "--port", "0", "--clients", "5", "--rate", "50/s", "--psk-env", "HIKE_LOAD_TEST_PSK",
		"--duration", "300ms", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Clients, Initiated, Pending, Established int
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if s.Clients != 5 || s.Initiated != 5 || s.Pending != 5 || s.Established != 0 {
		t.Fatalf("summary %+v", s)
	}
}

// TestLoadProgressFlag: --progress writes the live line to a stderr that
// is no terminal, for a harness to follow; without it stderr stays quiet.
func TestLoadProgressFlag(t *testing.T) {
	t.Setenv("HIKE_LOAD_TEST_PSK", "a pre-shared key")
	args := []string{"--target", "127.0.0.1:9", "--port", "0", "--clients", "5", "--rate", "50/s", "--psk-env", "HIKE_LOAD_TEST_PSK",
		"--duration", "300ms", "--json"}
	_, quiet, err := runLoadStderr(t, args...)
	if err != nil || quiet != "" {
		t.Fatalf("without --progress: stderr %q, %v", quiet, err)
	}
	_, progress, err := runLoadStderr(t, append(args, "--progress")...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(progress, "\r") || !strings.Contains(progress, "initiated 5/5") {
		t.Fatalf("with --progress: stderr %q, want \\r-led lines counting the clients", progress)
	}
}

// TestLoadCPUProfile: --cpuprofile leaves a gzip-compressed profile of
// the run.
func TestLoadCPUProfile(t *testing.T) {
	t.Setenv("HIKE_LOAD_TEST_PSK", "a pre-shared key")
	path := filepath.Join(t.TempDir(), "cpu.pb.gz")
	if _, err := runLoad(t, "--target", "127.0.0.1:9", "--port", "0", "--clients", "5", "--rate", "50/s", "--psk-env", "HIKE_LOAD_TEST_PSK",
		"--duration", "200ms", "--json", "--cpuprofile", path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("profile %s: %d octets, %v; want a gzip stream", path, len(b), err)
	}
}
