package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/cluster"
	"github.com/hike-vpn/hike/internal/control"
	"github.com/hike-vpn/hike/internal/control/controltest"
)

// statusSample is GET /v1/cluster as a leader reports it: three voters
// (one of them a witness that has not answered yet), three VIPs of which
// one is unassigned.
const statusSample = `{
  "node": "node1",
  "leader": "node1",
  "serving": true,
  "witness": false,
  "term": 7,
  "applied_index": 1234,
  "members": [
    {"id": "node1", "address": "10.0.0.1:7946", "witness": false, "leader": true, "reachable": true, "last_contact_ms": 0},
    {"id": "node2", "address": "10.0.0.2:7946", "witness": false, "leader": false, "reachable": false, "last_contact_ms": 1500},
    {"id": "w", "address": "10.0.0.3:7946", "witness": true, "leader": false, "reachable": false, "last_contact_ms": -1}
  ],
  "vips": [
    {"vip": "192.0.2.11", "owner": "node1", "home": "node1"},
    {"vip": "192.0.2.12", "owner": "node1", "home": "node2"},
    {"vip": "192.0.2.13", "owner": "", "home": "node2"}
  ],
  "sas": {"node1": 40, "node2": 2},
  "replication": {"vip_moves": 3, "entries": 99, "sa_puts": 80}
}`

// columns checks that every row of a tabwriter table starts each of its
// cells at the header's column offset.
func columns(t *testing.T, lines []string, header []string, rows [][]string) {
	t.Helper()
	if len(lines) != len(rows)+1 {
		t.Fatalf("want a header and %d rows, got:\n%s", len(rows), strings.Join(lines, "\n"))
	}
	for i, h := range header {
		col := strings.Index(lines[0], h)
		if col < 0 {
			t.Fatalf("header lacks %q: %q", h, lines[0])
		}
		for r, row := range rows {
			if len(lines[r+1]) < col || !strings.HasPrefix(lines[r+1][col:], row[i]) {
				t.Errorf("row %d column %q: want %q at offset %d in %q", r, h, row[i], col, lines[r+1])
			}
		}
	}
}

func TestPrintStatus(t *testing.T) {
	var b bytes.Buffer
	if err := printStatus(&b, []byte(statusSample)); err != nil {
		t.Fatal(err)
	}
	// Headline, blank, members table, blank, VIP table, blank, counters.
	parts := strings.Split(strings.TrimRight(b.String(), "\n"), "\n\n")
	if len(parts) != 4 {
		t.Fatalf("want 4 blocks, got %d:\n%s", len(parts), b.String())
	}
	if want := "node node1 (member), serving: true, leader: node1, term 7, applied index 1234"; parts[0] != want {
		t.Errorf("headline %q, want %q", parts[0], want)
	}
	columns(t, strings.Split(parts[1], "\n"),
		[]string{"MEMBER", "ADDRESS", "ROLE", "REACHABLE", "LAST CONTACT", "SAS"},
		[][]string{
			{"node1", "10.0.0.1:7946", "leader", "true", "0 ms", "40"},
			{"node2", "10.0.0.2:7946", "voter", "false", "1500 ms", "2"},
			{"w", "10.0.0.3:7946", "witness", "false", "-", "0"},
		})
	columns(t, strings.Split(parts[2], "\n"),
		[]string{"VIP", "OWNER", "HOME"},
		[][]string{
			{"192.0.2.11", "node1", "node1"},
			{"192.0.2.12", "node1", "node2"},
			{"192.0.2.13", "-", "node2"},
		})
	if want := "replication applied here: entries=99 sa_puts=80 vip_moves=3"; parts[3] != want {
		t.Errorf("counters %q, want %q", parts[3], want)
	}
}

// A witness without a leader says both in its headline, and a node that
// applied nothing prints no counters line.
func TestPrintStatusWitnessNoLeader(t *testing.T) {
	var b bytes.Buffer
	raw := `{"node": "w", "leader": "", "serving": false, "witness": true, "term": 3, "applied_index": 5,
		"members": [], "vips": [], "sas": {}, "replication": {}}`
	if err := printStatus(&b, []byte(raw)); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if want := "node w (witness), serving: false, leader: none (election under way, or no majority), term 3, applied index 5\n"; !strings.HasPrefix(out, want) {
		t.Errorf("got %q, want it to start with %q", out, want)
	}
	if strings.Contains(out, "replication") {
		t.Errorf("counters printed with none:\n%s", out)
	}
}

func TestPrintStatusRejectsGarbage(t *testing.T) {
	for _, raw := range []string{"", "[]", `{"members": 3}`, "<html>"} {
		if err := printStatus(&bytes.Buffer{}, []byte(raw)); err == nil {
			t.Errorf("printStatus(%q) succeeded", raw)
		}
	}
}

// fakeMember is a control service of a cluster member: the fake SA half
// and a cluster half that records what it was asked.
type fakeMember struct {
	*controltest.Fake
	status   cluster.Status
	handback []string // nodes asked for
	refuse   error    // what Handback, Join and Leave return
	joins    int
	leaves   int
}

func (f *fakeMember) ClusterStatus() cluster.Status { return f.status }
func (f *fakeMember) Handback(_ context.Context, node string) (int, error) {
	f.handback = append(f.handback, node)
	if f.refuse != nil {
		return 0, f.refuse
	}
	return 2, nil
}
func (f *fakeMember) Join(context.Context) error  { f.joins++; return f.refuse }
func (f *fakeMember) Leave(context.Context) error { f.leaves++; return f.refuse }

func newMemberSocket(t *testing.T) (string, *fakeMember) {
	t.Helper()
	var st cluster.Status
	if err := json.Unmarshal([]byte(statusSample), &st); err != nil {
		t.Fatal(err)
	}
	f := &fakeMember{Fake: controltest.New(nil), status: st}
	sock := filepath.Join(t.TempDir(), "control.sock")
	srv, err := control.Start(sock, f, control.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return sock, f
}

func TestClusterCommands(t *testing.T) {
	sock, f := newMemberSocket(t)
	run := func(args ...string) string {
		t.Helper()
		out, err := runHike(t, append(args, "--socket", sock)...)
		if err != nil {
			t.Fatalf("hike %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	// --json is the API's body unchanged; the table is printStatus of it.
	raw, err := control.NewClient(sock).Do(context.Background(), http.MethodGet, "/v1/cluster", nil)
	if err != nil {
		t.Fatal(err)
	}
	if out := run("cluster", "status", "--json"); out != string(raw) {
		t.Errorf("--json differs from the API:\n%s\nvs\n%s", out, raw)
	}
	var want bytes.Buffer
	if err := printStatus(&want, raw); err != nil {
		t.Fatal(err)
	}
	if out := run("cluster", "status"); out != want.String() || !strings.Contains(out, "192.0.2.13") {
		t.Errorf("status:\n%s\nwant:\n%s", out, want.String())
	}

	// Handback names this node unless told otherwise.
	if out := run("cluster", "handback"); out != "2 VIP(s) handed back to node1\n" {
		t.Errorf("handback: %q", out)
	}
	if out := run("cluster", "handback", "--node", "node2", "--timeout", "5s"); out != "2 VIP(s) handed back to node2\n" {
		t.Errorf("handback --node node2: %q", out)
	}
	var hr control.HandbackResult
	if err := json.Unmarshal([]byte(run("cluster", "handback", "--node", "node2", "--json")), &hr); err != nil || hr != (control.HandbackResult{Node: "node2", Moved: 2}) {
		t.Errorf("handback --json: %+v, %v", hr, err)
	}
	if fmt.Sprint(f.handback) != "[node1 node2 node2]" {
		t.Errorf("the daemon was asked to hand back to %v", f.handback)
	}
	if out := run("cluster", "join"); out != "joined the cluster's voters\n" || f.joins != 1 {
		t.Errorf("join: %q, %d calls", out, f.joins)
	}
	if out := run("cluster", "leave"); out != "left the cluster's voters\n" || f.leaves != 1 {
		t.Errorf("leave: %q, %d calls", out, f.leaves)
	}

	// A refusal reaches the operator word for word, as a conflict.
	f.refuse = errors.New("cluster: leader refused the command: only 2 voters would remain")
	for _, args := range [][]string{{"cluster", "leave"}, {"cluster", "join"}, {"cluster", "handback", "--node", "node2"}} {
		out, err := runHike(t, append(args, "--socket", sock)...)
		if err == nil || !strings.Contains(err.Error(), "only 2 voters would remain") {
			t.Errorf("hike %s: %v", strings.Join(args, " "), err)
		}
		if out != "" {
			t.Errorf("hike %s printed %q on stdout", strings.Join(args, " "), out)
		}
		out, _ = runHike(t, append(args, "--socket", sock, "--json")...)
		var eb control.ErrorBody
		if err := json.Unmarshal([]byte(out), &eb); err != nil || eb.Code != control.CodeConflict || !strings.Contains(eb.Error, "only 2 voters") {
			t.Errorf("hike %s --json: %q", strings.Join(args, " "), out)
		}
	}
}

func TestClusterArgumentErrors(t *testing.T) {
	sock, f := newMemberSocket(t)
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"cluster", "frobnicate"}, `unknown command "frobnicate": expected status, handback, join or leave`},
		{[]string{"cluster", "status", "x"}, `cluster status takes no arguments, got ["x"]`},
		{[]string{"cluster", "handback", "node2"}, `cluster handback takes no arguments, got ["node2"]`},
		{[]string{"cluster", "join", "now"}, "cluster join takes no arguments"},
		{[]string{"cluster", "leave", "a", "b"}, `cluster leave takes no arguments, got ["a" "b"]`},
		{[]string{"cluster", "handback", "--timeout", "soon"}, `invalid argument "soon"`},
		{[]string{"cluster", "status", "--node", "node2"}, "unknown flag: --node"},
	} {
		out, err := runHike(t, append(tc.args, "--socket", sock)...)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("hike %s: got error %v, want one containing %q", strings.Join(tc.args, " "), err, tc.msg)
		}
		if out != "" {
			t.Errorf("hike %s printed %q on stdout", strings.Join(tc.args, " "), out)
		}
	}
	if _, err := runHike(t, "witness", "extra"); err == nil || !strings.Contains(err.Error(), `unknown command "extra"`) {
		t.Errorf("hike witness extra: %v", err)
	}
	if len(f.handback) != 0 || f.joins != 0 || f.leaves != 0 {
		t.Errorf("a rejected command reached the daemon: handback %v, %d joins, %d leaves", f.handback, f.joins, f.leaves)
	}
}

// A daemon without a cluster section answers every cluster command with
// why not.
func TestClusterOnNonMember(t *testing.T) {
	fake := controltest.New(nil)
	sock := filepath.Join(t.TempDir(), "control.sock")
	srv, err := control.Start(sock, fake, control.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	for _, args := range [][]string{{"cluster", "status"}, {"cluster", "handback"}, {"cluster", "join"}, {"cluster", "leave"}} {
		_, err := runHike(t, append(args, "--socket", sock)...)
		if err == nil || !strings.Contains(err.Error(), "not a cluster member") {
			t.Errorf("hike %s on a non-member: %v", strings.Join(args, " "), err)
		}
	}
}

// The sample's VIPs are what cluster.VIPStatus encodes: bare addresses.
func TestStatusSampleMatchesAPI(t *testing.T) {
	var st cluster.Status
	if err := json.Unmarshal([]byte(statusSample), &st); err != nil {
		t.Fatal(err)
	}
	if st.VIPs[1].VIP != netip.MustParseAddr("192.0.2.12") || st.Members[2].LastContactMS != -1 || st.Replication.VIPMoves != 3 {
		t.Fatalf("sample does not decode as cluster.Status: %+v", st)
	}
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if err := printStatus(&a, []byte(statusSample)); err != nil {
		t.Fatal(err)
	}
	if err := printStatus(&b, raw); err != nil {
		t.Fatal(err)
	}
	// The API adds counters the sample leaves out (as zeros); the tables
	// must be the same.
	if before, _, _ := strings.Cut(a.String(), "replication"); !strings.HasPrefix(b.String(), before) {
		t.Errorf("the sample and its round trip through cluster.Status print differently:\n%s\nvs\n%s", a.String(), b.String())
	}
}
