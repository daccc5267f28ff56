package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/hike-vpn/hike/internal/cluster"
	"github.com/hike-vpn/hike/internal/config"
	"github.com/hike-vpn/hike/internal/control"
	"github.com/hike-vpn/hike/internal/ike"
)

// RunWitness runs a vote-only cluster member until ctx ends: raft and the
// control socket's cluster operations, no IKE and no data plane. Two
// concentrators and a witness make a majority that survives either
// concentrator.
func RunWitness(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	c := cfg.Cluster
	if c == nil {
		return fmt.Errorf("a witness needs a cluster section in its configuration")
	}
	if self := c.Self(); self == nil || !self.Witness {
		return fmt.Errorf("node %q is not a witness in the configuration (peers: witness: true); run it with `hike serve`", c.NodeID)
	}
	node, err := cluster.New(cluster.Options{Cluster: c, Logger: log.With("part", "cluster")})
	if err != nil {
		return err
	}
	ctl, err := control.Start(cfg.ControlSocket, memberService{witnessService{}, node, node.Status}, control.Options{Logger: log})
	if err != nil {
		return err
	}
	defer ctl.Close()
	if err := node.Start(ctx); err != nil {
		return err
	}
	log.Info("witness running", "node", c.NodeID, "control", ctl.Path())
	<-ctx.Done()
	return node.Close()
}

// witnessService is the SA half of the control API on a node that has no
// SAs.
type witnessService struct{}

var errWitness = fmt.Errorf("%w: a witness has no IKE SAs", control.ErrNotAvailable)

func (witnessService) List() []ike.SAInfo { return nil }
func (witnessService) Show(ref string) (ike.SAInfo, error) {
	return ike.SAInfo{}, fmt.Errorf("%w (a witness has none)", ike.ErrNoSuchSA)
}
func (witnessService) Initiate(string, func(ike.SAInfo, error)) error { return errWitness }
func (witnessService) Terminate(string, func(error)) error            { return errWitness }
func (witnessService) Resync(string, func(error)) error               { return errWitness }
