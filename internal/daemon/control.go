package daemon

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hike-vpn/hike/internal/cluster"
	"github.com/hike-vpn/hike/internal/control"
	"github.com/hike-vpn/hike/internal/dataplane/userspace"
	"github.com/hike-vpn/hike/internal/ike"
	"github.com/hike-vpn/hike/internal/transport"
)

// controlService is the daemon as the control socket sees it.
type controlService struct{ d *Daemon }

func (s controlService) List() []ike.SAInfo { return s.d.engine.List() }

func (s controlService) Show(ref string) (ike.SAInfo, error) { return s.d.engine.Show(ref) }

func (s controlService) Initiate(conn string, done func(ike.SAInfo, error)) error {
	// Checked here so that the API can tell an unknown name (404) from a
	// connection that cannot be started (409).
	if s.d.cfg.Connection(conn) == nil {
		return fmt.Errorf("%w %q", control.ErrUnknownConn, conn)
	}
	return s.d.Initiate(conn, done)
}

func (s controlService) Terminate(ref string, done func(error)) error {
	return s.d.engine.Terminate(ref, done)
}

// Resync takes the connection's configured margin and jump: by hand, as
// after a takeover.
func (s controlService) Resync(ref string, done func(error)) error {
	return s.d.engine.Resync(ref, ike.ResyncOptions{}, done)
}

// memberService adds the cluster operations of a member; a witness has
// them without the SA operations.
type memberService struct {
	control.Service
	node   *cluster.Node
	status func() cluster.Status
}

func (s memberService) ClusterStatus() cluster.Status { return s.status() }

func (s memberService) Handback(ctx context.Context, node string) (int, error) {
	return s.node.Handback(ctx, node)
}

func (s memberService) Join(ctx context.Context) error  { return s.node.Join(ctx) }
func (s memberService) Leave(ctx context.Context) error { return s.node.Leave(ctx) }

// controlRun is the daemon's control socket and metrics endpoint.
type controlRun struct {
	ctl     *control.Server
	metrics *control.MetricsServer
	sockets atomic.Pointer[[]*transport.Socket]
	once    sync.Once
}

// startControl opens the control socket and, when configured, the metrics
// endpoint. Run calls it before it opens any network socket, so that a
// second daemon on the node, or a metrics port in use, stops start-up
// before anything is sent.
func (d *Daemon) startControl() (*controlRun, error) {
	r := &controlRun{}
	var svc control.Service = controlService{d}
	if d.member != nil {
		svc = memberService{controlService{d}, d.member.node, d.member.status}
	}
	ctl, err := control.Start(d.cfg.ControlSocket, svc, control.Options{Logger: d.log})
	if err != nil {
		return nil, err
	}
	r.ctl = ctl
	d.log.Info("control socket", "path", ctl.Path())
	if d.cfg.Metrics != "" {
		if r.metrics, err = control.ServeMetrics(d.cfg.Metrics, d.metricsSources(r), d.log); err != nil {
			ctl.Close()
			return nil, err
		}
		d.log.Info("metrics", "addr", r.metrics.Addr())
	}
	return r, nil
}

// setSockets hands the transport sockets to the metrics once Run has them.
func (r *controlRun) setSockets(s []*transport.Socket) { r.sockets.Store(&s) }

// stop closes both endpoints; it may be called more than once.
func (r *controlRun) stop() {
	r.once.Do(func() {
		if r.metrics != nil {
			r.metrics.Close()
		}
		r.ctl.Close()
	})
}

func (d *Daemon) metricsSources(r *controlRun) control.Sources {
	src := control.Sources{
		Engine: d.engine,
		Sockets: func() []control.SocketStats {
			p := r.sockets.Load()
			if p == nil {
				return nil
			}
			out := make([]control.SocketStats, 0, len(*p))
			for _, s := range *p {
				out = append(out, control.SocketStats{Addr: s.LocalAddr().String(), Stats: s.Stats()})
			}
			return out
		},
	}
	// Only the userspace plane counts packets itself; the kernel's XFRM
	// counters are per SA and read through netlink.
	if us, ok := d.dp.(interface{ Stats() userspace.Stats }); ok {
		src.Dataplane = func() (control.DataplaneStats, bool) {
			s := us.Stats()
			return control.DataplaneStats{
				TxPackets: s.TxPackets,
				RxPackets: s.RxPackets,
				Drops: map[string]uint64{
					"no_policy":       s.DropNoPolicy,
					"no_sa":           s.DropNoSA,
					"malformed":       s.DropMalformed,
					"seal":            s.DropSeal,
					"send_failed":     s.DropSendFailed,
					"too_big":         s.DropTooBig,
					"unknown_spi":     s.DropUnknownSPI,
					"auth":            s.DropAuth,
					"replay":          s.DropReplay,
					"invalid":         s.DropInvalid,
					"policy_mismatch": s.DropPolicyMismatch,
					"dummy":           s.DropDummy,
					"tun_write":       s.DropTUNWrite,
				},
			}, true
		}
	}
	return src
}
