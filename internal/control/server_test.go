package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/control"
	"github.com/hike-vpn/hike/internal/control/controltest"
	"github.com/hike-vpn/hike/internal/ike"
)

// fixture is a control server on a real unix socket over a fake service.
type fixture struct {
	fake *controltest.Fake
	srv  *control.Server
	c    *control.Client
	sa   ike.SAInfo // an established SA with RFC 6311 negotiated
	sa2  ike.SAInfo // one without
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	sa := controltest.SA(0x1122334455667788, 0x99aabbccddeeff00, "rw", "198.51.100.1:4500")
	sa.Extensions.MIDSync, sa.Extensions.ReplaySync = true, true
	sa2 := controltest.SA(0xa1, 0xb2, "site", "203.0.113.9:500")
	fake := controltest.New([]string{"rw", "site"}, sa, sa2)
	// The socket sits in a directory that does not exist yet.
	path := filepath.Join(t.TempDir(), "run", "hike", "control.sock")
	srv, err := control.Start(path, fake, control.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &fixture{fake: fake, srv: srv, c: control.NewClient(path), sa: sa, sa2: sa2}
}

func apiError(t *testing.T, err error, status int, code string) *control.APIError {
	t.Helper()
	var ae *control.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("got error %v (%T), want an APIError with status %d", err, err, status)
	}
	if ae.Status != status || ae.Code != code {
		t.Fatalf("got status %d code %q (%s), want %d %q", ae.Status, ae.Code, ae.Message, status, code)
	}
	var body control.ErrorBody
	if err := json.Unmarshal(ae.Body, &body); err != nil || body.Error == "" {
		t.Fatalf("error body is not an ErrorBody: %v: %s", err, ae.Body)
	}
	return ae
}

func TestListAndShow(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	sas, err := f.c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(sas) != 2 || sas[0].ID != f.sa.ID || sas[1].ID != f.sa2.ID {
		t.Fatalf("list: got %+v", sas)
	}
	if !sas[0].Extensions.MIDSync || sas[0].Remote != "198.51.100.1:4500" {
		t.Fatalf("list lost fields: %+v", sas[0])
	}
	// An ID has a slash in it; SPIs in either form resolve too.
	for _, ref := range []string{f.sa.ID, f.sa.SPIi, f.sa.SPIr} {
		got, err := f.c.Show(ctx, ref)
		if err != nil {
			t.Fatalf("show %s: %v", ref, err)
		}
		if got.ID != f.sa.ID {
			t.Fatalf("show %s: got %s", ref, got.ID)
		}
	}
	_, err = f.c.Show(ctx, "deadbeef_i/0_r")
	ae := apiError(t, err, http.StatusNotFound, control.CodeNotFound)
	if !strings.Contains(ae.Message, "deadbeef_i/0_r") {
		t.Fatalf("404 does not name the ref: %s", ae.Message)
	}
}

func TestEmptyListIsArray(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.sock")
	srv, err := control.Start(path, controltest.New(nil), control.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	b, err := control.NewClient(path).Do(context.Background(), http.MethodGet, "/v1/sas", nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(b)) != "[]" {
		t.Fatalf("empty list: got %q, want []", b)
	}
}

func TestInitiate(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	sa, err := f.c.Initiate(ctx, "site", 0)
	if err != nil {
		t.Fatal(err)
	}
	if sa.Conn != "site" || !sa.Initiator || sa.State != "established" {
		t.Fatalf("initiate returned %+v", sa)
	}
	if _, err := f.c.Show(ctx, sa.ID); err != nil {
		t.Fatalf("initiated SA not listed: %v", err)
	}

	_, err = f.c.Initiate(ctx, "nosuch", 0)
	ae := apiError(t, err, http.StatusNotFound, control.CodeNotFound)
	if !strings.Contains(ae.Message, `"nosuch"`) {
		t.Fatalf("unknown conn message: %s", ae.Message)
	}
	_, err = f.c.Initiate(ctx, controltest.ConnFail, 0)
	ae = apiError(t, err, http.StatusBadGateway, control.CodeFailed)
	if !strings.Contains(ae.Message, controltest.ErrAuthFailed.Error()) {
		t.Fatalf("failure does not carry the cause: %s", ae.Message)
	}
	start := time.Now()
	_, err = f.c.Initiate(ctx, controltest.ConnStall, 50*time.Millisecond)
	apiError(t, err, http.StatusGatewayTimeout, control.CodeTimeout)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a 50ms timeout took %v", d)
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		method string
		path   string
		body   any
		status int
		code   string
	}{
		{"no conn", http.MethodPost, "/v1/initiate", map[string]any{}, 400, control.CodeBadRequest},
		{"unknown field", http.MethodPost, "/v1/initiate", map[string]any{"conn": "rw", "wait": true}, 400, control.CodeBadRequest},
		{"wrong type", http.MethodPost, "/v1/initiate", map[string]any{"conn": 7}, 400, control.CodeBadRequest},
		{"bad timeout", http.MethodPost, "/v1/initiate", map[string]any{"conn": "rw", "timeout": "soon"}, 400, control.CodeBadRequest},
		{"negative timeout", http.MethodPost, control.SAPath(f.sa.ID, "terminate"), map[string]any{"timeout": "-1s"}, 400, control.CodeBadRequest},
		{"GET initiate", http.MethodGet, "/v1/initiate", nil, 405, control.CodeMethod},
		{"POST list", http.MethodPost, "/v1/sas", nil, 405, control.CodeMethod},
		{"DELETE sa", http.MethodDelete, control.SAPath(f.sa.ID, ""), nil, 405, control.CodeMethod},
		{"unknown endpoint", http.MethodGet, "/v2/sas", nil, 404, control.CodeNotFound},
		{"unknown op", http.MethodPost, control.SAPath(f.sa.ID, "explode"), nil, 404, control.CodeNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.c.Do(ctx, tc.method, tc.path, tc.body)
			apiError(t, err, tc.status, tc.code)
		})
	}
	// Nothing above may have changed the SAs.
	if sas, _ := f.c.List(ctx); len(sas) != 2 {
		t.Fatalf("bad requests changed the SA list: %d SAs", len(sas))
	}
}

func TestMalformedBody(t *testing.T) {
	f := newFixture(t)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", f.srv.Path())
	}}}
	for _, body := range []string{`{"conn":`, `{"conn":"rw"}{"conn":"rw"}`, `[1,2]`, strings.Repeat(" ", 70<<10) + `{}`} {
		resp, err := hc.Post("http://hike/v1/initiate", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var eb control.ErrorBody
		err = json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || err != nil || eb.Code != control.CodeBadRequest {
			t.Errorf("body %.20q: status %d, %v, %+v", body, resp.StatusCode, err, eb)
		}
	}
}

func TestTerminate(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// By SPI: the result names the SA by its ID.
	res, err := f.c.Terminate(ctx, f.sa2.SPIr, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != f.sa2.ID || res.Conn != "site" || res.Result != "deleted" {
		t.Fatalf("terminate: %+v", res)
	}
	if _, err := f.c.Show(ctx, f.sa2.ID); err == nil {
		t.Fatal("terminated SA still shown")
	}
	_, err = f.c.Terminate(ctx, f.sa2.ID, 0)
	apiError(t, err, http.StatusNotFound, control.CodeNotFound)
}

func TestResync(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	got, err := f.c.Resync(ctx, f.sa.ID, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := f.sa.NextSendMID + 9 // the fake's window 1 plus margin 8
	if got.NextSendMID != want || got.Stats.LastSyncBefore[0] != f.sa.NextSendMID || got.Stats.LastSyncAfter[0] != want {
		t.Fatalf("resync returned send MID %d, last sync %v -> %v; want %d -> %d",
			got.NextSendMID, got.Stats.LastSyncBefore, got.Stats.LastSyncAfter, f.sa.NextSendMID, want)
	}
	_, err = f.c.Resync(ctx, f.sa2.ID, 0)
	ae := apiError(t, err, http.StatusConflict, control.CodeConflict)
	if !strings.Contains(ae.Message, "not negotiated") {
		t.Fatalf("409 does not say why: %s", ae.Message)
	}
	_, err = f.c.Resync(ctx, "0_i/0_r", 0)
	apiError(t, err, http.StatusNotFound, control.CodeNotFound)
	f.fake.NoResync = true
	_, err = f.c.Resync(ctx, f.sa.ID, 0)
	apiError(t, err, http.StatusNotImplemented, control.CodeNotAvailable)
}

func TestUnreachable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nobody.sock")
	_, err := control.NewClient(path).List(context.Background())
	var ue *control.UnreachableError
	if !errors.As(err, &ue) || ue.Path != path || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v (%T), want an UnreachableError for %s", err, err, path)
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("message does not name the socket: %v", err)
	}
}

func TestSocketFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hike")
	path := filepath.Join(dir, "control.sock")
	srv, err := control.Start(path, controltest.New(nil), control.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want a 0600 socket", fi.Mode())
	}
	di, err := os.Stat(dir)
	if err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v (%v), want 0700", di.Mode(), err)
	}
	// The private bind directory is gone.
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want only the socket", len(ents))
	}

	// A second server on a live socket is refused and leaves it working.
	if _, err := control.Start(path, controltest.New(nil), control.Options{}); err == nil || !strings.Contains(err.Error(), "serving") {
		t.Fatalf("second Start on a live socket: %v", err)
	}
	if _, err := control.NewClient(path).List(context.Background()); err != nil {
		t.Fatalf("first server broken by the second: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket left behind after Close: %v", err)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	// A socket whose listener is gone, as after SIGKILL.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	srv, err := control.Start(path, controltest.New(nil), control.Options{})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer srv.Close()
	if _, err := control.NewClient(path).List(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRefusesNonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := control.Start(path, controltest.New(nil), control.Options{}); err == nil {
		t.Fatal("Start replaced a regular file")
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Fatal("Start touched a regular file")
	}
}

func TestCloseKeepsReplacedSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	srv, err := control.Start(path, controltest.New(nil), control.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Someone else has taken the path meanwhile; Close must not delete it.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	other, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	srv.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("Close removed another process's socket: %v", err)
	}
}

func TestCloseEndsWaitingRequests(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	srv, err := control.Start(path, controltest.New(nil), control.Options{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := control.NewClient(path).Initiate(context.Background(), controltest.ConnStall, 0)
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond) // let the request reach its wait
	start := time.Now()
	srv.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close waited %v for a stalled initiate", d)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("stalled initiate succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stalled initiate still waiting after Close")
	}
}
