package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/hike-vpn/hike/internal/ike"
)

// Options tune a Server.
type Options struct {
	Logger *slog.Logger
	// Timeout is how long an operation waits for its outcome when the
	// request names no timeout; 30 s if zero.
	Timeout time.Duration
	// MaxTimeout caps a timeout a request asks for; 5 min if zero.
	MaxTimeout time.Duration
}

const (
	defaultTimeout    = 30 * time.Second
	defaultMaxTimeout = 5 * time.Minute
	maxBody           = 64 << 10
)

// Server serves the control API on a unix socket.
type Server struct {
	path   string
	log    *slog.Logger
	ln     *net.UnixListener
	srv    *http.Server
	sock   os.FileInfo // what we bound, so that Close removes only our socket
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// Start binds the control socket at path and serves svc on it until Close.
//
// The socket is created with mode 0600 and its directory, if missing, with
// 0700: whoever can connect can tear down every SA. A socket left behind
// by a daemon that died is replaced; one that still answers is an error,
// so that a second `hike serve` cannot take the first one's socket away.
func Start(path string, svc Service, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := checkStale(path); err != nil {
		return nil, err
	}
	ln, err := bindPrivate(path)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		ln.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		path: path, log: opts.Logger, ln: ln, sock: fi, cancel: cancel,
		srv: &http.Server{
			Handler:           Handler(svc, opts),
			ReadHeaderTimeout: 5 * time.Second,
			// Handlers that wait for a peer see this context end when the
			// server closes, so that shutdown never waits for a timeout.
			BaseContext: func(net.Listener) context.Context { return ctx },
			ErrorLog:    slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
		},
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("control socket failed", "path", path, "err", err)
		}
	}()
	return s, nil
}

// Path is where the socket is bound.
func (s *Server) Path() string { return s.path }

// Close stops serving, ends waiting requests and removes the socket, unless
// another process has replaced it meanwhile.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		s.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err = s.srv.Shutdown(ctx); err != nil {
			err = s.srv.Close()
		}
		s.wg.Wait()
		if fi, serr := os.Lstat(s.path); serr == nil && os.SameFile(fi, s.sock) {
			if rerr := os.Remove(s.path); rerr != nil && err == nil {
				err = rerr
			}
		}
	})
	return err
}

// checkStale refuses a path that holds something other than a dead
// socket. It creates the directory.
func checkStale(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket %s: exists and is not a socket; not replacing it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another process is serving on it (is hike already running?)", path)
	}
	return nil
}

// bindPrivate binds the socket in a fresh 0700 directory beside path,
// restricts it to 0600 and renames it into place. The socket is never
// reachable with looser permissions, no process-wide umask is touched, and
// the rename replaces a stale socket atomically. Where the detour would not
// fit a socket address (108 bytes), it binds in place instead.
func bindPrivate(path string) (*net.UnixListener, error) {
	if tmp, err := os.MkdirTemp(filepath.Dir(path), ".hike-ctl-"); err == nil {
		defer os.RemoveAll(tmp)
		p := filepath.Join(tmp, "s")
		if ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"}); err == nil {
			ln.SetUnlinkOnClose(false)
			if err := os.Chmod(p, 0o600); err == nil {
				if err := os.Rename(p, path); err == nil {
					return ln, nil
				}
			}
			ln.Close()
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		os.Remove(path)
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// Handler serves the control API for svc. Start uses it; it is exported
// for tests and for embedding in another listener.
func Handler(svc Service, opts Options) http.Handler {
	h := &handler{svc: svc, log: opts.Logger, timeout: opts.Timeout, max: opts.MaxTimeout}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.timeout <= 0 {
		h.timeout = defaultTimeout
	}
	if h.max <= 0 {
		h.max = defaultMaxTimeout
	}
	// Patterns carry no method so that a wrong method gets a JSON error
	// like every other failure, not the mux's plain text.
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/sas", h.method(http.MethodGet, h.list))
	mux.HandleFunc("/v1/sas/{ref}", h.method(http.MethodGet, h.show))
	mux.HandleFunc("/v1/sas/{ref}/terminate", h.method(http.MethodPost, h.terminate))
	mux.HandleFunc("/v1/sas/{ref}/resync", h.method(http.MethodPost, h.resync))
	mux.HandleFunc("/v1/initiate", h.method(http.MethodPost, h.initiate))
	mux.HandleFunc("/v1/cluster", h.method(http.MethodGet, h.clusterStatus))
	mux.HandleFunc("/v1/cluster/handback", h.method(http.MethodPost, h.clusterHandback))
	mux.HandleFunc("/v1/cluster/join", h.method(http.MethodPost, h.clusterMembership(true)))
	mux.HandleFunc("/v1/cluster/leave", h.method(http.MethodPost, h.clusterMembership(false)))
	mountPprof(mux) // runtime profiles, root-only like the rest of the socket
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, CodeNotFound, "no such endpoint: "+r.URL.Path)
	})
	return mux
}

type handler struct {
	svc     Service
	log     *slog.Logger
	timeout time.Duration
	max     time.Duration
}

func (h *handler) method(m string, f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != m && !(m == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", m)
			writeError(w, http.StatusMethodNotAllowed, CodeMethod, r.Method+" not allowed here, use "+m)
			return
		}
		f(w, r)
	}
}

func (h *handler) list(w http.ResponseWriter, _ *http.Request) {
	sas := h.svc.List()
	if sas == nil {
		sas = []ike.SAInfo{} // an empty list is [], never null
	}
	writeJSON(w, http.StatusOK, sas)
}

func (h *handler) show(w http.ResponseWriter, r *http.Request) {
	info, ok := h.lookup(w, r)
	if ok {
		writeJSON(w, http.StatusOK, info)
	}
}

func (h *handler) initiate(w http.ResponseWriter, r *http.Request) {
	var req InitiateRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Conn == "" {
		writeError(w, http.StatusBadRequest, CodeBadRequest, `"conn" is required: the name of a connection in the configuration`)
		return
	}
	timeout, ok := h.wait(w, req.Timeout)
	if !ok {
		return
	}
	type outcome struct {
		info ike.SAInfo
		err  error
	}
	ch := make(chan outcome, 1)
	if err := h.svc.Initiate(req.Conn, func(info ike.SAInfo, err error) { ch <- outcome{info, err} }); err != nil {
		writeServiceError(w, err)
		return
	}
	h.log.Info("control: initiate", "conn", req.Conn)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case o := <-ch:
		if o.err != nil {
			writeError(w, http.StatusBadGateway, CodeFailed, fmt.Sprintf("connection %q: %v", req.Conn, o.err))
			return
		}
		writeJSON(w, http.StatusOK, o.info)
	case <-t.C:
		writeError(w, http.StatusGatewayTimeout, CodeTimeout,
			fmt.Sprintf("connection %q: not established within %v; it may still come up (see hike sa list)", req.Conn, timeout))
	case <-r.Context().Done():
		writeError(w, http.StatusServiceUnavailable, CodeFailed, "control socket closing")
	}
}

func (h *handler) terminate(w http.ResponseWriter, r *http.Request) {
	info, timeout, ok := h.prepareOp(w, r)
	if !ok {
		return
	}
	ch := make(chan error, 1)
	if err := h.svc.Terminate(info.ID, func(err error) { ch <- err }); err != nil {
		writeServiceError(w, err)
		return
	}
	h.log.Info("control: terminate", "sa", info.ID, "conn", info.Conn)
	h.finish(w, r, ch, timeout, info.ID, "deleted", func() {
		writeJSON(w, http.StatusOK, Result{ID: info.ID, Conn: info.Conn, Result: "deleted"})
	})
}

func (h *handler) resync(w http.ResponseWriter, r *http.Request) {
	info, timeout, ok := h.prepareOp(w, r)
	if !ok {
		return
	}
	ch := make(chan error, 1)
	if err := h.svc.Resync(info.ID, func(err error) { ch <- err }); err != nil {
		writeServiceError(w, err)
		return
	}
	h.log.Info("control: resync", "sa", info.ID, "conn", info.Conn)
	h.finish(w, r, ch, timeout, info.ID, "synchronised", func() {
		// The SA after the sync carries the counters before and after it.
		after, err := h.svc.Show(info.ID)
		if err != nil {
			writeServiceError(w, fmt.Errorf("IKE SA %s synchronised, then: %w", info.ID, err))
			return
		}
		writeJSON(w, http.StatusOK, after)
	})
}

// prepareOp resolves the SA of a terminate or resync and reads the
// optional body.
func (h *handler) prepareOp(w http.ResponseWriter, r *http.Request) (ike.SAInfo, time.Duration, bool) {
	var req WaitRequest
	if !decode(w, r, &req) {
		return ike.SAInfo{}, 0, false
	}
	timeout, ok := h.wait(w, req.Timeout)
	if !ok {
		return ike.SAInfo{}, 0, false
	}
	info, ok := h.lookup(w, r)
	return info, timeout, ok
}

// finish waits for the outcome of an operation on the SA id and answers
// the request: through ok when the operation succeeded.
func (h *handler) finish(w http.ResponseWriter, r *http.Request, ch <-chan error, timeout time.Duration, id, what string, ok func()) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-ch:
		if err != nil {
			writeError(w, http.StatusBadGateway, CodeFailed, fmt.Sprintf("IKE SA %s: %v", id, err))
			return
		}
		ok()
	case <-t.C:
		writeError(w, http.StatusGatewayTimeout, CodeTimeout,
			fmt.Sprintf("IKE SA %s: not %s within %v; the exchange may still complete", id, what, timeout))
	case <-r.Context().Done():
		writeError(w, http.StatusServiceUnavailable, CodeFailed, "control socket closing")
	}
}

func (h *handler) lookup(w http.ResponseWriter, r *http.Request) (ike.SAInfo, bool) {
	ref := r.PathValue("ref")
	if ref == "" {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "an IKE SA ID or SPI is required")
		return ike.SAInfo{}, false
	}
	info, err := h.svc.Show(ref)
	if err != nil {
		writeServiceError(w, fmt.Errorf("IKE SA %q: %w", ref, err))
		return ike.SAInfo{}, false
	}
	return info, true
}

// wait turns a request's timeout into a duration within bounds.
func (h *handler) wait(w http.ResponseWriter, s string) (time.Duration, bool) {
	if s == "" {
		return h.timeout, true
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf(`"timeout": want a positive duration such as "30s", got %q`, s))
		return 0, false
	}
	return min(d, h.max), true
}

// decode reads an optional JSON body strictly: unknown fields are errors,
// so that a misspelt option is not silently ignored.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "reading the request body: "+err.Error())
		return false
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return true
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "bad JSON body: "+err.Error())
		return false
	}
	if d.More() {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "bad JSON body: more than one value")
		return false
	}
	return true
}

// writeServiceError maps an error from the Service to a status code.
func writeServiceError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ike.ErrNoSuchSA), errors.Is(err, ErrUnknownConn):
		writeError(w, http.StatusNotFound, CodeNotFound, err.Error())
	case errors.Is(err, ErrNotAvailable):
		writeError(w, http.StatusNotImplemented, CodeNotAvailable, err.Error())
	default:
		writeError(w, http.StatusConflict, CodeConflict, err.Error())
	}
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, ErrorBody{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(ErrorBody{Error: "encoding the response: " + err.Error(), Code: CodeFailed})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
