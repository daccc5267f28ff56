package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hike-vpn/hike/internal/ike"
)

// Client talks to a daemon's control socket.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client for the control socket at path. Nothing is
// dialled until the first call.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
	}
	return &Client{path: path, hc: &http.Client{Transport: tr}}
}

// Path is the socket the client dials.
func (c *Client) Path() string { return c.path }

// UnreachableError means nothing answered on the control socket: the
// daemon is not running, or runs with another control_socket.
type UnreachableError struct {
	Path string
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach hike's control socket %s: %v", e.Path, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// APIError is an error the daemon answered with.
type APIError struct {
	Status  int
	Code    string
	Message string
	// Body is the response as received, for callers that relay it.
	Body []byte
}

func (e *APIError) Error() string { return e.Message }

// Do sends one request and returns the body of a 2xx response as
// received; any other status becomes an *APIError. body, if not nil, is
// encoded as JSON. The CLI's --json prints what Do returns unchanged.
func (c *Client) Do(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	// The host is never dialled; it only has to make a valid URL.
	req, err := http.NewRequestWithContext(ctx, method, "http://hike"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, &UnreachableError{Path: c.path, Err: op.Err}
		}
		return nil, fmt.Errorf("control socket %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("control socket %s: reading the response: %w", c.path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &APIError{Status: resp.StatusCode, Body: b}
		var eb ErrorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
			e.Code, e.Message = eb.Code, eb.Error
		} else {
			e.Message = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
		}
		return nil, e
	}
	return b, nil
}

// SAPath is the API path of one SA. IDs contain a slash, so the ref is
// escaped as a single segment.
func SAPath(ref string, op string) string {
	p := "/v1/sas/" + url.PathEscape(ref)
	if op != "" {
		p += "/" + op
	}
	return p
}

func timeoutString(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return d.String()
}

// List returns every IKE SA.
func (c *Client) List(ctx context.Context) ([]ike.SAInfo, error) {
	var out []ike.SAInfo
	return out, c.call(ctx, http.MethodGet, "/v1/sas", nil, &out)
}

// Show returns the IKE SA named by ref (ID or SPI).
func (c *Client) Show(ctx context.Context, ref string) (ike.SAInfo, error) {
	var out ike.SAInfo
	return out, c.call(ctx, http.MethodGet, SAPath(ref, ""), nil, &out)
}

// Initiate starts the named connection and waits up to timeout (0: the
// server's default) for the IKE SA.
func (c *Client) Initiate(ctx context.Context, conn string, timeout time.Duration) (ike.SAInfo, error) {
	var out ike.SAInfo
	return out, c.call(ctx, http.MethodPost, "/v1/initiate", InitiateRequest{Conn: conn, Timeout: timeoutString(timeout)}, &out)
}

// Terminate deletes the IKE SA named by ref.
func (c *Client) Terminate(ctx context.Context, ref string, timeout time.Duration) (Result, error) {
	var out Result
	return out, c.call(ctx, http.MethodPost, SAPath(ref, "terminate"), WaitRequest{Timeout: timeoutString(timeout)}, &out)
}

// Resync runs RFC 6311 resynchronisation on the IKE SA named by ref and
// returns the SA afterwards.
func (c *Client) Resync(ctx context.Context, ref string, timeout time.Duration) (ike.SAInfo, error) {
	var out ike.SAInfo
	return out, c.call(ctx, http.MethodPost, SAPath(ref, "resync"), WaitRequest{Timeout: timeoutString(timeout)}, &out)
}

func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	b, err := c.Do(ctx, method, path, body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("control socket %s: bad response: %w", c.path, err)
	}
	return nil
}
