package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Every connection between nodes is TLS 1.3 with certificates from the
// cluster CA on both sides. The first byte the dialer sends after the
// handshake says who reads the connection: raft's transport writes its RPC
// type (a small number), a forwarded command starts with connForward.
const connForward byte = 0xF0

// handshakeTimeout bounds the TLS handshake and the first byte of an
// accepted connection, so a stalled peer cannot hold the accept loop.
const handshakeTimeout = 5 * time.Second

// identity holds the TLS material and the membership the certificates are
// checked against.
type identity struct {
	self   string
	cert   tls.Certificate
	pool   *x509.CertPool
	byAddr map[string]string // raft address -> node ID
	member map[string]bool
	hostIP map[string]netip.Addr // node ID -> IP of its raft address, if literal
}

func loadIdentity(self string, peers map[string]string, caFile, certFile, keyFile string) (*identity, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cluster: CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("cluster: %s holds no PEM certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster: node certificate: %w", err)
	}
	id := &identity{self: self, cert: cert, pool: pool, byAddr: map[string]string{}, member: map[string]bool{},
		hostIP: map[string]netip.Addr{}}
	for nodeID, addr := range peers {
		id.byAddr[addr] = nodeID
		id.member[nodeID] = true
		if ap, err := netip.ParseAddrPort(addr); err == nil && !ap.Addr().IsUnspecified() {
			id.hostIP[nodeID] = ap.Addr().Unmap()
		}
	}
	// A node holding another node's certificate would be rejected by every
	// peer that dials it; say so at start rather than as a silent partition.
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("cluster: node certificate: %w", err)
	}
	if !names(leaf, self) {
		// id is returned for tests that start a misconfigured node anyway.
		return id, fmt.Errorf("cluster: %s names %q, not this node %q", certFile, certNames(leaf), self)
	}
	return id, nil
}

// names reports whether the certificate identifies node id, by common name
// or by a DNS subject alternative name.
func names(c *x509.Certificate, id string) bool {
	return c.Subject.CommonName == id || slices.Contains(c.DNSNames, id)
}

func certNames(c *x509.Certificate) []string {
	out := []string{c.Subject.CommonName}
	for _, n := range c.DNSNames {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// peerNode returns the configured member that the verified chain names.
func (id *identity) peerNode(cs tls.ConnectionState) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", errors.New("no peer certificate")
	}
	leaf := cs.PeerCertificates[0]
	if id.member[leaf.Subject.CommonName] {
		return leaf.Subject.CommonName, nil
	}
	for _, n := range leaf.DNSNames {
		if id.member[n] {
			return n, nil
		}
	}
	return "", fmt.Errorf("certificate names %q, no member of the cluster", certNames(leaf))
}

// fromPeer reports whether a connection from remote may be node peer.
// Certificates prove membership; a node's identity within the cluster is
// also bound to the address it is configured with (nodes dial from it), so
// that a member holding another member's certificate cannot speak for it.
// Nodes that share VIPs share a link, so there is no NAT between them.
func (id *identity) fromPeer(peer string, remote net.Addr) bool {
	want, ok := id.hostIP[peer]
	if !ok {
		return true // configured by name: the certificate is all we have
	}
	ta, ok := remote.(*net.TCPAddr)
	if !ok {
		return false
	}
	got, _ := netip.AddrFromSlice(ta.IP)
	return got.Unmap() == want
}

func (id *identity) config() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.cert},
		RootCAs:      id.pool,
		ClientCAs:    id.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		// Node IDs, not host names, are what certificates name; the
		// dialer checks the ID in VerifyConnection instead.
		InsecureSkipVerify: true,
	}
}

// clientConfig verifies the server's chain against the cluster CA by hand
// (InsecureSkipVerify only turns off host-name matching, which would tie
// certificates to addresses) and requires that it names want.
func (id *identity) clientConfig(want string) *tls.Config {
	c := id.config()
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("cluster: peer sent no certificate")
		}
		opts := x509.VerifyOptions{Roots: id.pool, Intermediates: x509.NewCertPool(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		for _, ic := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(ic)
		}
		if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
			return fmt.Errorf("cluster: peer certificate: %w", err)
		}
		if !names(cs.PeerCertificates[0], want) {
			return fmt.Errorf("cluster: peer certificate names %q, expected node %q", certNames(cs.PeerCertificates[0]), want)
		}
		return nil
	}
	return c
}

// serverConfig lets crypto/tls verify the client chain (ClientAuth) and
// additionally requires that it names a member.
func (id *identity) serverConfig() *tls.Config {
	c := id.config()
	c.InsecureSkipVerify = false
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		_, err := id.peerNode(cs)
		return err
	}
	return c
}

// streamLayer is raft's transport over TLS. It also records, per peer, when
// bytes last arrived on a connection this node dialed: on the leader that
// is the answer to a heartbeat or append, which is the liveness signal the
// takeover decision uses (raft does not expose per-follower contact).
type streamLayer struct {
	id    *identity
	ln    net.Listener
	raft  chan net.Conn
	fwd   func(conn *tls.Conn, peer string)
	done  chan struct{}
	once  sync.Once
	seen  sync.Map // node ID -> *atomic.Int64 (unix nanoseconds)
	rejct atomic.Int64
	wg    sync.WaitGroup
	// tx and rx count the bytes of every connection, raft and forwarded,
	// on the wire: TLS records and handshakes included.
	tx, rx atomic.Uint64
	// cut simulates a network partition in tests: no connection is made
	// and every existing one fails.
	cut atomic.Bool
}

var errCut = errors.New("cluster: partitioned (test)")

func newStreamLayer(id *identity, addr string, fwd func(*tls.Conn, string)) (*streamLayer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cluster: listen: %w", err)
	}
	s := &streamLayer{id: id, ln: ln, raft: make(chan net.Conn), fwd: fwd, done: make(chan struct{})}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func (s *streamLayer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
		}()
	}
}

// serve finishes the handshake off the accept loop and routes the
// connection by its first byte.
func (s *streamLayer) serve(c net.Conn) {
	tc := tls.Server(&countConn{Conn: c, s: s}, s.id.serverConfig())
	tc.SetDeadline(time.Now().Add(handshakeTimeout))
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.rejct.Add(1)
		c.Close()
		return
	}
	peer, _ := s.id.peerNode(tc.ConnectionState())
	if !s.id.fromPeer(peer, c.RemoteAddr()) || s.cut.Load() {
		s.rejct.Add(1)
		tc.Close()
		return
	}
	br := bufio.NewReaderSize(tc, 1)
	first, err := br.Peek(1)
	if err != nil {
		tc.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	if first[0] == connForward {
		br.ReadByte()
		if s.fwd != nil {
			s.fwd(tc, peer)
		}
		tc.Close()
		return
	}
	select {
	case s.raft <- &peekedConn{Conn: tc, r: br, cut: &s.cut}:
	case <-s.done:
		tc.Close()
	}
}

// peekedConn returns the byte that routing peeked before the rest.
type peekedConn struct {
	net.Conn
	r   *bufio.Reader
	cut *atomic.Bool
}

func (p *peekedConn) Read(b []byte) (int, error) {
	if p.cut.Load() {
		p.Conn.Close()
		return 0, errCut
	}
	var n int
	var err error
	if p.r.Buffered() > 0 {
		n, err = p.r.Read(b)
	} else {
		n, err = p.Conn.Read(b)
	}
	if p.cut.Load() {
		p.Conn.Close()
		return 0, errCut
	}
	return n, err
}

func (p *peekedConn) Write(b []byte) (int, error) {
	if p.cut.Load() {
		p.Conn.Close()
		return 0, errCut
	}
	return p.Conn.Write(b)
}

func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.raft:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

func (s *streamLayer) Close() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		err = s.ln.Close()
	})
	return err
}

func (s *streamLayer) Addr() net.Addr { return s.ln.Addr() }

// Dial connects to the node configured at address; its certificate must
// name that node.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, peer, err := s.dial(string(address), timeout)
	if err != nil {
		return nil, err
	}
	return &seenConn{Conn: c, at: s.seenOf(peer), cut: &s.cut}, nil
}

func (s *streamLayer) dial(address string, timeout time.Duration) (*tls.Conn, string, error) {
	if s.cut.Load() {
		return nil, "", errCut
	}
	peer, ok := s.id.byAddr[address]
	if !ok {
		return nil, "", fmt.Errorf("cluster: %s is not a configured peer address", address)
	}
	nd := &net.Dialer{Timeout: timeout}
	if ip, ok := s.id.hostIP[s.id.self]; ok {
		nd.LocalAddr = &net.TCPAddr{IP: ip.AsSlice()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	raw, err := nd.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, "", err
	}
	c := tls.Client(&countConn{Conn: raw, s: s}, s.id.clientConfig(peer))
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, "", err
	}
	return c, peer, nil
}

// countConn counts what crosses the wire under TLS.
type countConn struct {
	net.Conn
	s *streamLayer
}

func (c *countConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.s.rx.Add(uint64(n))
	return n, err
}

func (c *countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.s.tx.Add(uint64(n))
	return n, err
}

func (s *streamLayer) seenOf(peer string) *atomic.Int64 {
	v, ok := s.seen.Load(peer)
	if !ok {
		v, _ = s.seen.LoadOrStore(peer, new(atomic.Int64))
	}
	return v.(*atomic.Int64)
}

// lastSeen is when bytes last arrived from peer on a dialed connection
// (zero if never).
func (s *streamLayer) lastSeen(peer string) time.Time {
	v, ok := s.seen.Load(peer)
	if !ok {
		return time.Time{}
	}
	ns := v.(*atomic.Int64).Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

type seenConn struct {
	net.Conn
	at  *atomic.Int64
	cut *atomic.Bool
}

func (c *seenConn) Write(b []byte) (int, error) {
	if c.cut.Load() {
		c.Conn.Close()
		return 0, errCut
	}
	return c.Conn.Write(b)
}

func (c *seenConn) Read(b []byte) (int, error) {
	if c.cut.Load() {
		c.Conn.Close()
		return 0, errCut
	}
	n, err := c.Conn.Read(b)
	if c.cut.Load() {
		c.Conn.Close()
		return 0, errCut
	}
	if n > 0 {
		c.at.Store(time.Now().UnixNano())
	}
	return n, err
}
