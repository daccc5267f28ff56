package cluster

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/hike-vpn/hike/internal/config"
	"github.com/hike-vpn/hike/internal/ike"
)

// Defaults for Options.
const (
	DefaultFailAfter   = time.Second
	DefaultBatchWindow = 20 * time.Millisecond
)

// applyTimeout bounds one replicated write, forwarding and retries included.
const applyTimeout = 10 * time.Second

// maxEntry bounds one raft entry; a larger batch is split.
const maxEntry = 4 << 20

// Options configure a Node.
type Options struct {
	// Cluster is the validated cluster section of the configuration. Its
	// KeyFile holds the cluster key that seals SA records; it is required
	// unless this node is a witness.
	Cluster *config.Cluster
	// Logger receives the node's and raft's messages; nil discards them.
	Logger *slog.Logger
	// FailAfter is how long the leader lets a node stay unreachable before
	// moving its VIPs. A node that has not heard from a leader for half of
	// it stops serving, so that the two do not overlap. Default 1s.
	FailAfter time.Duration
	// BatchWindow is how long ApplyRecords and DeleteSAs wait for other
	// calls to join their raft entry. Default 20ms.
	BatchWindow time.Duration
	// Release is called when a VIP this node serves is handed to another
	// running node (handback). It must return once this node no longer
	// serves the VIP: address down, SAs let go. The move completes after
	// it returns. nil: nothing to let go of.
	Release func(vip netip.Addr)

	tune          func(*raft.Config) // tests: snapshot thresholds
	segmentSize   int                // tests: WAL segment size (compaction drops whole segments)
	skipSelfCheck bool               // tests: start with another node's certificate
}

// EventKind says what an Event reports.
type EventKind int

const (
	// EventLeader: the leader changed (Leader, "" while there is none).
	EventLeader EventKind = iota + 1
	// EventMembers: the voter set changed (Members).
	EventMembers
	// EventServing: this node may (Serving) or must no longer serve its
	// VIPs. It must stop when it has lost contact with the majority.
	EventServing
	// EventVIP: VIP now belongs to To (From had it; either may be ""). A
	// takeover is an EventVIP from a failed node; the node named in To adds
	// the address and restores the SAs that live on it (Records).
	EventVIP
)

// Event is a change in the cluster. Events are edges for a daemon to react
// to quickly; the state they report can always be read again (Leader,
// Members, Serving, VIPs), and a daemon reconciles against that.
type Event struct {
	Kind    EventKind
	Leader  string
	Members []Member
	Serving bool
	VIP     netip.Addr
	From    string
	To      string
}

// Member is one voter.
type Member struct {
	ID      string
	Address string
	Witness bool
	Leader  bool
}

// Node is this process's membership in the cluster.
type Node struct {
	opts    Options
	self    config.Peer
	id      *identity
	seal    *sealer // nil on a witness
	log     *slog.Logger
	fsm     *fsm
	batch   batcher
	witness map[string]bool

	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool

	// Set by Start.
	raft      *raft.Raft
	stream    *streamLayer
	transport *raft.NetworkTransport
	wal       *wal.WAL
	meta      *metadb.BoltMetaDB
	fwd       forwarder
	started   chan struct{} // closed when the fields above are set
	stop      chan struct{}
	wg        sync.WaitGroup

	// The monitor's view, for Serving and Members.
	view struct {
		sync.Mutex
		serving bool
		members []Member
	}
}

// New checks the options and loads the TLS material and the cluster key.
// It opens nothing; Start does.
func New(opts Options) (*Node, error) {
	c := opts.Cluster
	if c == nil {
		return nil, errors.New("cluster: no cluster configuration")
	}
	self := c.Self()
	if self == nil {
		return nil, fmt.Errorf("cluster: node %q is not among the peers", c.NodeID)
	}
	if opts.FailAfter <= 0 {
		opts.FailAfter = DefaultFailAfter
	}
	if opts.BatchWindow <= 0 {
		opts.BatchWindow = DefaultBatchWindow
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	peers := map[string]string{}
	n := &Node{opts: opts, self: *self, log: opts.Logger, witness: map[string]bool{}, subs: map[*subscriber]struct{}{}}
	for _, p := range c.Peers {
		if len(p.ID) > 255 {
			return nil, fmt.Errorf("cluster: node ID %.20q... is too long", p.ID)
		}
		peers[p.ID] = p.Address
		n.witness[p.ID] = p.Witness
	}
	id, err := loadIdentity(c.NodeID, peers, c.TLS.CAFile, c.TLS.CertFile, c.TLS.KeyFile)
	if err != nil && !(opts.skipSelfCheck && id != nil) {
		return nil, err
	}
	n.id = id
	if !self.Witness || c.KeyFile != "" {
		if c.KeyFile == "" {
			return nil, errors.New("cluster: a node with a data plane needs the cluster key (cluster.key_file)")
		}
		k, err := ReadKeyFile(c.KeyFile)
		if err != nil {
			return nil, err
		}
		n.seal = &sealer{key: k}
	}
	n.fsm = newFSM(n.publish)
	n.started, n.stop = make(chan struct{}), make(chan struct{})
	n.batch.n = n
	return n, nil
}

// Start opens the raft log and snapshots in the data directory, listens on
// this node's address, and joins the cluster; on first start it bootstraps
// the configured voters. It returns once raft runs, before an election
// (watch EventLeader or Leader). The node runs until Close or until ctx is
// done.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	again := n.closed || n.raft != nil
	n.mu.Unlock()
	if again {
		return errors.New("cluster: Start on a started or closed node")
	}
	c := n.opts.Cluster
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{n.log}})
	walDir := filepath.Join(c.DataDir, "wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	// WAL.Close leaves its meta database open (and locked), so a node
	// could not be restarted in the same process; keep it to close it.
	meta := &metadb.BoltMetaDB{}
	segSize := wal.DefaultSegmentSize
	if n.opts.segmentSize > 0 {
		segSize = n.opts.segmentSize
	}
	w, err := wal.Open(walDir, wal.WithLogger(hl), wal.WithMetaStore(meta), wal.WithSegmentSize(segSize))
	if err != nil {
		meta.Close()
		return fmt.Errorf("cluster: raft log: %w", err)
	}
	n.meta = meta
	snaps, err := raft.NewFileSnapshotStoreWithLogger(c.DataDir, 2, hl)
	if err != nil {
		w.Close()
		meta.Close()
		return fmt.Errorf("cluster: snapshots: %w", err)
	}
	sl, err := newStreamLayer(n.id, n.self.Address, n.serveForward)
	if err != nil {
		w.Close()
		meta.Close()
		return err
	}
	tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: sl, MaxPool: 3, Timeout: 2 * time.Second, Logger: hl,
	})
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(c.NodeID)
	conf.Logger = hl
	conf.HeartbeatTimeout = c.HeartbeatTimeout
	conf.ElectionTimeout = c.ElectionTimeout
	// A leader cut off from the majority steps down within the lease; it
	// must be shorter than the time the majority waits before taking its
	// VIPs over.
	conf.LeaderLeaseTimeout = min(c.HeartbeatTimeout, n.opts.FailAfter/2)
	if n.opts.tune != nil {
		n.opts.tune(conf)
	}
	fail := func(err error) error {
		tr.Close()
		w.Close()
		meta.Close()
		return fmt.Errorf("cluster: %w", err)
	}
	existing, err := raft.HasExistingState(w, w, snaps)
	if err != nil {
		return fail(err)
	}
	if !existing {
		var servers []raft.Server
		for _, p := range c.Peers {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Address)})
		}
		if err := raft.BootstrapCluster(conf, w, w, snaps, tr, raft.Configuration{Servers: servers}); err != nil {
			return fail(err)
		}
	}
	r, err := raft.NewRaft(conf, n.fsm, w, w, snaps, tr)
	if err != nil {
		return fail(err)
	}
	n.raft, n.stream, n.transport, n.wal = r, sl, tr, w
	n.fwd.n = n
	close(n.started)
	n.wg.Add(2)
	go n.monitor()
	go n.releaser()
	context.AfterFunc(ctx, func() { n.Close() })
	return nil
}

// Close leaves the cluster without a goodbye (the others see a failure) and
// releases everything Start opened. Subscription channels are closed.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	subs := n.subs
	n.subs = nil
	n.mu.Unlock()
	var errs []error
	close(n.stop)
	if n.raft != nil {
		n.wg.Wait()
		errs = append(errs, n.raft.Shutdown().Error())
		n.fwd.close()
		errs = append(errs, n.transport.Close())
		n.stream.wg.Wait()
		errs = append(errs, n.wal.Close(), n.meta.Close())
	}
	for s := range subs {
		s.close()
	}
	if n.seal != nil {
		clear(n.seal.key)
	}
	return errors.Join(errs...)
}

// Leader returns the leader's node ID, "" while there is none.
func (n *Node) Leader() string {
	if n.raft == nil {
		return ""
	}
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// Members returns the voters as raft's configuration has them.
func (n *Node) Members() []Member {
	n.view.Lock()
	defer n.view.Unlock()
	return slices.Clone(n.view.members)
}

// Serving reports whether this node is in contact with the majority, has
// applied what the leader had decided when contact was made, and so may
// serve the VIPs it owns.
func (n *Node) Serving() bool {
	n.view.Lock()
	defer n.view.Unlock()
	return n.view.serving
}

// VIPs returns the replicated VIP ownership map (as applied on this node).
func (n *Node) VIPs() map[netip.Addr]string {
	n.fsm.mu.RLock()
	defer n.fsm.mu.RUnlock()
	m := make(map[netip.Addr]string, len(n.fsm.vips))
	for k, v := range n.fsm.vips {
		m[k] = v
	}
	return m
}

// Records decrypts the records this node's copy of the state holds for
// owner. After a takeover they include the SAs that moved with a VIP: the
// copy applies entries in log order, so when this node has seen the
// EventVIP it holds every record committed before the move. Records that
// do not decrypt are left out and reported in the error.
func (n *Node) Records(owner string) ([]ike.Record, error) {
	return n.records(func(e *saEntry) bool { return e.owner == owner })
}

// RecordsOn is Records of the SAs of owner that live on local: what a
// node restores when it takes over one VIP, without opening the rest.
func (n *Node) RecordsOn(owner string, local netip.Addr) ([]ike.Record, error) {
	local = local.Unmap()
	return n.records(func(e *saEntry) bool { return e.owner == owner && e.local.Unmap() == local })
}

func (n *Node) records(match func(*saEntry) bool) ([]ike.Record, error) {
	if n.seal == nil {
		return nil, errors.New("cluster: a witness holds no cluster key")
	}
	type sealed struct {
		k          SAKey
		blob       []byte
		hasMIDs    bool
		send, recv uint32
	}
	var todo []sealed
	n.fsm.mu.RLock()
	for k, e := range n.fsm.sas {
		if match(e) {
			todo = append(todo, sealed{k, e.blob, e.hasMIDs, e.send, e.recv})
		}
	}
	n.fsm.mu.RUnlock()
	out := make([]ike.Record, 0, len(todo))
	var errs []error
	cache := map[[saltSize]byte]cipher.AEAD{}
	for _, s := range todo {
		r, err := n.seal.open(s.k, s.blob, cache)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if s.hasMIDs {
			r.NextSend, r.NextRecv = s.send, s.recv
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

// ApplyRecords replicates recs as owned by this node, sealed. Calls within
// BatchWindow, and calls made while an earlier batch is being committed,
// share one raft entry; a call larger than one entry (4 MiB) is cut into
// several, committed in order but not atomically. It returns when
// everything is committed, or with ctx's error (the records may still be
// committed).
func (n *Node) ApplyRecords(ctx context.Context, recs []ike.Record) error {
	if n.seal == nil {
		return errors.New("cluster: a witness holds no SAs")
	}
	if len(recs) == 0 {
		return nil
	}
	ops, err := n.seal.seal(recs)
	if err != nil {
		return err
	}
	return n.batch.submit(ctx, ops)
}

// ApplyMIDs replicates the Message IDs of SAs this node serves, batched
// like ApplyRecords, a few dozen octets each: what an SA without RFC 6311
// needs replicated after each exchange. Records opens the record with
// them; the next ApplyRecords of the SA replaces them.
func (n *Node) ApplyMIDs(ctx context.Context, mids []ike.MIDs) error {
	if n.seal == nil {
		return errors.New("cluster: a witness holds no SAs")
	}
	if len(mids) == 0 {
		return nil
	}
	ops := make([]saOp, len(mids))
	for i, m := range mids {
		ops[i] = saOp{mids: true, key: SAKey{SPIi: m.Key.SPIi, SPIr: m.Key.SPIr}, send: m.NextSend, recv: m.NextRecv}
	}
	return n.batch.submit(ctx, ops)
}

// DeleteSAs removes SAs from the replicated state, batched like
// ApplyRecords.
func (n *Node) DeleteSAs(ctx context.Context, keys []SAKey) error {
	if len(keys) == 0 {
		return nil
	}
	ops := make([]saOp, len(keys))
	for i, k := range keys {
		ops[i] = saOp{del: true, key: k}
	}
	return n.batch.submit(ctx, ops)
}

// SetVIPOwner moves vip from one node to another ("" for none) if its owner
// is still from; otherwise it fails, so that a decision made on stale state
// never overrides a newer one.
func (n *Node) SetVIPOwner(ctx context.Context, vip netip.Addr, from, to string) error {
	err := n.apply(ctx, appendVIP(nil, vip.Unmap(), from, to))
	if errors.Is(err, errOwnerChanged) && n.VIPs()[vip.Unmap()] == to {
		// A retry of a move that had been committed.
		return nil
	}
	return err
}

// apply commits one command, on the leader directly or forwarded to it,
// retrying across elections until ctx or applyTimeout ends.
func (n *Node) apply(ctx context.Context, cmd []byte) error {
	if n.raft == nil {
		return errors.New("cluster: not started")
	}
	ctx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	for {
		var err error
		if n.raft.State() == raft.Leader {
			err = n.applyLocal(cmd)
		} else if addr, id := n.raft.LeaderWithID(); id != "" {
			err = n.fwd.forward(ctx, string(addr), cmd)
		} else {
			err = raft.ErrNotLeader
		}
		if err == nil || errors.Is(err, errOwnerChanged) || errors.Is(err, errCommand) || errors.Is(err, errRefused) {
			return err
		}
		n.log.Debug("cluster: apply retry", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: apply: %w (last: %v)", ctx.Err(), err)
		case <-n.stop:
			return errors.New("cluster: closed")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (n *Node) applyLocal(cmd []byte) error {
	f := n.raft.Apply(cmd, applyTimeout)
	if err := f.Error(); err != nil {
		return err
	}
	if err, ok := f.Response().(error); ok {
		return err
	}
	return nil
}

// slogWriter turns raft's hclog lines ("TIME [LEVEL] name: message:
// k=v") into slog records; hclog passes warnings and errors only.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if i := strings.Index(line, "["); i >= 0 {
		if j := strings.Index(line[i:], "]"); j > 0 {
			if line[i+1:i+j] == "ERROR" {
				level = slog.LevelError
			}
			line = strings.TrimSpace(line[i+j+1:])
		}
	}
	w.l.Log(context.Background(), level, line)
	return len(p), nil
}

var _ io.Writer = slogWriter{}
