package control_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/control"
	"github.com/hike-vpn/hike/internal/control/controltest"
)

// FuzzAPI drives the handler with arbitrary methods, paths and bodies: it
// must never panic, and every answer is JSON with a status the API
// documents.
func FuzzAPI(f *testing.F) {
	sa := controltest.SA(0x11, 0x22, "rw", "198.51.100.1:500")
	sa.Extensions.MIDSync = true
	for _, s := range []struct{ method, path, body string }{
		{"GET", "/v1/sas", ""},
		{"GET", "/v1/sas/11_i%2F22_r", ""},
		{"GET", "/v1/sas/0000000000000022", ""},
		{"POST", "/v1/initiate", `{"conn":"rw","timeout":"1ms"}`},
		{"POST", "/v1/initiate", `{"conn":"stall","timeout":"1ms"}`},
		{"POST", "/v1/initiate", `{"conn":"fail"}`},
		{"POST", "/v1/sas/11_i%2F22_r/resync", `{"timeout":"1s"}`},
		{"POST", "/v1/sas/11_i%2F22_r/terminate", ``},
		{"PUT", "/v1/sas/%zz", `{`},
		{"GET", "/v1/sas/../../etc/passwd", ""},
	} {
		f.Add(s.method, s.path, s.body)
	}
	allowed := map[int]bool{200: true, 301: true, 307: true, 308: true, 400: true, 404: true, 405: true, 409: true, 501: true, 502: true, 504: true}
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \t\r\n#?") {
			return
		}
		// The Go runtime's profiles are not the API: HTML and binary
		// answers, and a CPU profile that runs for 30 s.
		if u, err := url.PathUnescape(path); err != nil || strings.Contains(path, "pprof") || strings.Contains(u, "pprof") {
			return
		}
		switch method {
		case "GET", "POST", "PUT", "DELETE", "HEAD":
		default:
			return
		}
		// A fresh fake per input keeps runs independent.
		h := control.Handler(controltest.New([]string{"rw"}, sa), control.Options{MaxTimeout: 10 * time.Millisecond})
		req, err := http.NewRequest(method, "http://hike"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !allowed[rec.Code] {
			t.Fatalf("%s %s: status %d", method, path, rec.Code)
		}
		if rec.Code/100 == 3 || method == "HEAD" {
			return // the mux's redirect for unclean paths
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: status %d, body not JSON: %q", method, path, rec.Code, rec.Body)
		}
	})
}
