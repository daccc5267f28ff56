package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/control"
	"github.com/hike-vpn/hike/internal/control/controltest"
	"github.com/hike-vpn/hike/internal/ike"
)

// saEnv is a control server over a fake service, as `hike serve` would
// run it, with two SAs: rw (RFC 6311 negotiated, one Child SA, a VIP) and
// site (nothing negotiated, no Child SA).
type saEnv struct {
	sock string
	rw   ike.SAInfo
	site ike.SAInfo
	fake *controltest.Fake
}

func newSAEnv(t *testing.T) *saEnv {
	t.Helper()
	rw := controltest.SA(0x1122334455667788, 0x99aabbccddeeff00, "rw", "198.51.100.1:4500")
	rw.PeerID, rw.VirtualIP = "carol@example.org", "10.3.0.1"
	rw.NextSendMID, rw.NextRecvMID = 7, 12
	rw.Extensions = ike.Extensions{Fragmentation: true, MIDSync: true, ReplaySync: true, NATRemote: true}
	rw.Established = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	rw.Stats = ike.SAStats{Retransmits: 3, DPDSent: 5, DPDAnswered: 4, SyncsAnswered: 2, SyncsDropped: 1,
		LastSyncBefore: [2]uint32{4, 9}, LastSyncAfter: [2]uint32{6, 9}}
	rw.Children = []ike.ChildInfo{{Name: "net", SPIIn: "c1a2b3c4", SPIOut: "d1e2f3a4", State: "installed",
		Encr: 20, EncrBits: 256, ESN: true, LocalTS: []string{"10.1.0.0/16"}, RemoteTS: []string{"10.3.0.1/32"}}}
	site := controltest.SA(0xa1, 0xb2, "site", "203.0.113.9:500")
	fake := controltest.New([]string{"rw", "site"}, rw, site)
	sock := filepath.Join(t.TempDir(), "control.sock")
	srv, err := control.Start(sock, fake, control.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &saEnv{sock: sock, rw: rw, site: site, fake: fake}
}

// hike runs the CLI with args and returns what it printed on stdout.
func runHike(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCmd()
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func (e *saEnv) hike(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runHike(t, append(args, "--socket", e.sock)...)
	if err != nil {
		t.Fatalf("hike %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// The interop suite calls exactly this and decodes a JSON array of objects.
func TestSAListJSONAsInterop(t *testing.T) {
	e := newSAEnv(t)
	out := e.hike(t, "sa", "list", "--json")
	var sas []map[string]any
	if err := json.Unmarshal([]byte(out), &sas); err != nil {
		t.Fatalf("not a JSON array: %v: %s", err, out)
	}
	if len(sas) != 2 || sas[0]["id"] != e.rw.ID || sas[0]["virtual_ip"] != "10.3.0.1" || sas[1]["conn"] != "site" {
		t.Fatalf("unexpected list: %v", sas)
	}
	// --json is the API's body unchanged.
	raw, err := control.NewClient(e.sock).Do(context.Background(), http.MethodGet, "/v1/sas", nil)
	if err != nil {
		t.Fatal(err)
	}
	if out != string(raw) {
		t.Fatalf("--json differs from the API:\n%s\nvs\n%s", out, raw)
	}
}

func TestSAListTable(t *testing.T) {
	e := newSAEnv(t)
	out := e.hike(t, "sa", "list")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and two rows, got:\n%s", out)
	}
	header := []string{"ID", "CONN", "STATE", "REMOTE", "PEER ID", "VIP", "CHILDREN", "MIDS TX/RX", "RFC 6311"}
	rows := [][]string{
		{e.rw.ID, "rw", "established", "198.51.100.1:4500", "carol@example.org", "10.3.0.1", "1", "7/12", "msgid,replay"},
		{e.site.ID, "site", "established", "203.0.113.9:500", "-", "-", "0", "2/2", "-"},
	}
	// Every column starts at the same offset in the header and the rows.
	for i, h := range header {
		col := strings.Index(lines[0], h)
		if col < 0 {
			t.Fatalf("header lacks %q: %q", h, lines[0])
		}
		for r, row := range rows {
			if !strings.HasPrefix(lines[r+1][col:], row[i]) {
				t.Errorf("row %d column %q: want %q at offset %d in %q", r, h, row[i], col, lines[r+1])
			}
		}
	}
}

func TestSAShow(t *testing.T) {
	e := newSAEnv(t)
	// By SPI, as operators copy it from logs.
	out := e.hike(t, "sa", "show", e.rw.SPIr)
	for _, want := range []string{
		"IKE SA " + e.rw.ID + "\n",
		`connection\s+rw\n`,
		`state\s+established, responder\n`,
		`peer id\s+carol@example.org\n`,
		`virtual IP\s+10.3.0.1\n`,
		`established\s+2026-11-27T12:00:00Z \(`,
		`message IDs\s+next send 7, next receive 12\n`,
		`extensions\s+fragmentation, NAT at peer\n`,
		`RFC 6311\s+message ID sync yes, replay counter sync yes\n`,
		`syncs\s+answered 2, dropped 1\n`,
		`last sync\s+send MID 4 -> 6, receive MID 9 -> 9\n`,
		`retransmits\s+3\n`,
		`DPD\s+sent 5, answered 4\n`,
		`Child SAs \(1\):\n`,
		`NAME\s+STATE\s+SPI IN\s+SPI OUT\s+ENCR\s+INTEG\s+ESN\s+LOCAL TS\s+REMOTE TS\s+IN\s+OUT\n`,
		`net\s+installed\s+c1a2b3c4\s+d1e2f3a4\s+AES-GCM-16/256\s+-\s+yes\s+10.1.0.0/16\s+10.3.0.1/32\s+-\s+-\n`,
	} {
		if !regexp.MustCompile(regexp.QuoteMeta(want)).MatchString(out) && !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	site := e.hike(t, "sa", "show", e.site.ID)
	for _, want := range []string{`RFC 6311\s+message ID sync no, replay counter sync no`, `last sync\s+none`, `no Child SAs`} {
		if !regexp.MustCompile(want).MatchString(site) {
			t.Errorf("show of site lacks %q:\n%s", want, site)
		}
	}

	var got ike.SAInfo
	if err := json.Unmarshal([]byte(e.hike(t, "sa", "show", e.rw.ID, "--json")), &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != e.rw.ID || got.Stats.LastSyncAfter != e.rw.Stats.LastSyncAfter || len(got.Children) != 1 {
		t.Fatalf("show --json: %+v", got)
	}
}

func TestSAOperations(t *testing.T) {
	e := newSAEnv(t)
	out := e.hike(t, "sa", "initiate", "site", "--timeout", "1s")
	if !strings.HasPrefix(out, "IKE SA ") || !regexp.MustCompile(`conn\w*\s+site\n`).MatchString(out) ||
		!regexp.MustCompile(`state\s+established, initiator`).MatchString(out) {
		t.Fatalf("initiate output:\n%s", out)
	}
	if n := len(e.fake.List()); n != 3 {
		t.Fatalf("initiate: %d SAs, want 3", n)
	}

	out = e.hike(t, "sa", "resync", e.rw.ID)
	want := "IKE SA " + e.rw.ID + " resynchronised: send MID 7 -> 16, receive MID 12 -> 12\n"
	if out != want {
		t.Fatalf("resync: got %q, want %q", out, want)
	}

	out = e.hike(t, "sa", "terminate", e.site.SPIi)
	if out != "IKE SA "+e.site.ID+" (site) deleted\n" {
		t.Fatalf("terminate: %q", out)
	}
	if _, err := e.fake.Show(e.site.ID); err == nil {
		t.Fatal("terminate left the SA")
	}

	var r control.Result
	if err := json.Unmarshal([]byte(e.hike(t, "sa", "terminate", e.rw.ID, "--json")), &r); err != nil || r.ID != e.rw.ID || r.Result != "deleted" {
		t.Fatalf("terminate --json: %+v, %v", r, err)
	}
}

func TestSAErrors(t *testing.T) {
	e := newSAEnv(t)
	for _, tc := range []struct {
		args []string
		msg  string // in the error
		json string // "code" printed on stdout with --json
	}{
		{[]string{"sa", "show", "feedface"}, `IKE SA "feedface": no such IKE SA`, ""},
		{[]string{"sa", "show", "feedface", "--json"}, "no such IKE SA", control.CodeNotFound},
		{[]string{"sa", "initiate", "nosuch"}, `no such connection "nosuch"`, ""},
		{[]string{"sa", "initiate", controltest.ConnFail}, controltest.ErrAuthFailed.Error(), ""},
		{[]string{"sa", "initiate", controltest.ConnStall, "--timeout", "50ms", "--json"}, "not established within 50ms", control.CodeTimeout},
		{[]string{"sa", "resync", e.site.ID}, "not negotiated", ""},
		{[]string{"sa", "terminate", "0_i/0_r"}, "no such IKE SA", ""},
		{[]string{"sa", "show"}, "sa show expects an IKE SA ID or SPI", ""},
		{[]string{"sa", "show", "a", "b"}, "got 2 arguments; usage: hike sa show REF", ""},
		{[]string{"sa", "initiate"}, "expects a connection name", ""},
		{[]string{"sa", "list", "x"}, "sa list takes no arguments", ""},
		{[]string{"sa", "frobnicate"}, `unknown command "frobnicate"`, ""},
		{[]string{"sa", "initiate", "rw", "--timeout", "soon"}, `invalid argument "soon"`, ""},
	} {
		out, err := runHike(t, append(tc.args, "--socket", e.sock)...)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("hike %s: got error %v, want one containing %q", strings.Join(tc.args, " "), err, tc.msg)
			continue
		}
		if tc.json != "" {
			var eb control.ErrorBody
			if jerr := json.Unmarshal([]byte(out), &eb); jerr != nil || eb.Code != tc.json {
				t.Errorf("hike %s: stdout %q, want an error body with code %q", strings.Join(tc.args, " "), out, tc.json)
			}
		}
	}
	e.fake.NoResync = true
	if _, err := runHike(t, "sa", "resync", e.rw.ID, "--socket", e.sock); err == nil || !strings.Contains(err.Error(), "not available") {
		t.Errorf("resync without support: %v", err)
	}
}

func TestSAUnreachableSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "gone.sock")
	for _, args := range [][]string{{"sa", "list"}, {"sa", "list", "--json"}, {"sa", "terminate", "x"}} {
		out, err := runHike(t, append(args, "--socket", sock)...)
		if err == nil {
			t.Fatalf("hike %v against no daemon succeeded", args)
		}
		for _, want := range []string{sock, "hike serve -c FILE"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("hike %v: error %q lacks %q", args, err, want)
			}
		}
		if out != "" {
			t.Errorf("hike %v printed %q on stdout", args, out)
		}
	}
}
