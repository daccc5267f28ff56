// Package control is hike's operator surface: an HTTP+JSON API on a unix
// socket that `hike sa` talks to, the client for it, and the Prometheus
// collector that reads the daemon's counters at scrape time.
//
// The API, version 1 (every error is {"error": "...", "code": "..."}):
//
//	GET  /v1/sas                   200 [SA...]
//	GET  /v1/sas/{ref}             200 SA | 404
//	POST /v1/initiate              {"conn": NAME, "timeout": "30s"} → 200 SA once established
//	POST /v1/sas/{ref}/terminate   {"timeout": "30s"} (body optional) → 200 Result
//	POST /v1/sas/{ref}/resync      {"timeout": "30s"} (body optional) → 200 SA after the sync
//
// A ref is the ID `hike sa list` shows or either SPI in hex; IDs contain a
// slash, so clients escape refs as one path segment (%2F).
//
// Status codes: 400 bad input, 404 unknown SA or connection, 405 wrong
// method, 409 the operation does not apply to the SA as it is (say, RFC
// 6311 not negotiated), 501 the daemon lacks the operation, 502 the
// exchange with the peer failed, 503 the daemon is shutting down, 504 no
// outcome within the timeout (the exchange may still complete).
package control

import (
	"errors"

	"github.com/hike-vpn/hike/internal/ike"
)

// Service is what the control API operates on: in `hike serve` the IKE
// engine behind the daemon, in tests a fake.
//
// The operations that talk to the peer return an error only when they
// cannot start; their outcome arrives through done, at most once, from
// any goroutine.
type Service interface {
	List() []ike.SAInfo
	// Show resolves ref like the engine does and returns an error wrapping
	// ike.ErrNoSuchSA when nothing matches.
	Show(ref string) (ike.SAInfo, error)
	// Initiate returns an error wrapping ErrUnknownConn for a name the
	// configuration does not have.
	Initiate(conn string, done func(ike.SAInfo, error)) error
	Terminate(ref string, done func(error)) error
	// Resync runs the RFC 6311 cluster-role resynchronisation. A daemon
	// built without it returns ErrNotAvailable.
	Resync(ref string, done func(error)) error
}

var (
	// ErrUnknownConn is wrapped by Service.Initiate for a connection name
	// the configuration does not define.
	ErrUnknownConn = errors.New("no such connection")
	// ErrNotAvailable is wrapped by a Service that lacks an operation.
	ErrNotAvailable = errors.New("operation not available in this daemon")
)

// Error codes in error bodies, one per status the API uses, so that
// scripts need not parse messages.
const (
	CodeBadRequest   = "bad_request"
	CodeNotFound     = "not_found"
	CodeMethod       = "method_not_allowed"
	CodeConflict     = "conflict"
	CodeNotAvailable = "not_available"
	CodeFailed       = "failed"
	CodeTimeout      = "timeout"
)

// ErrorBody is the JSON of every non-2xx response.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// InitiateRequest is the body of POST /v1/initiate.
type InitiateRequest struct {
	Conn string `json:"conn"`
	// Timeout bounds the wait for the outcome, as a Go duration ("30s");
	// empty means the server's default.
	Timeout string `json:"timeout,omitempty"`
}

// WaitRequest is the optional body of terminate and resync.
type WaitRequest struct {
	Timeout string `json:"timeout,omitempty"`
}

// Result is the answer to terminate: the SA as it was named before it went.
type Result struct {
	ID     string `json:"id"`
	Conn   string `json:"conn"`
	Result string `json:"result"`
}
