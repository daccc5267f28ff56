package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// A graceful move of a VIP between two running nodes (handback) passes
// through a releasing owner, "from>to": the holder sees that it no longer
// owns the VIP, takes the address down and lets the SAs go, and only then
// completes the move (CompleteRelease). The new owner adds the address when
// the VIP is its own, so the two never serve it at once. A takeover from a
// failed node needs no such step: the failed node serves nothing.
//
// Node IDs cannot contain '>' (config names), so the owner string is
// unambiguous; the FSM treats it as just another owner, and the SAs on the
// VIP belong to it while the move is under way, so that neither node's
// late writes land.
const releaseSep = ">"

func releasing(from, to string) string { return from + releaseSep + to }

// Releasing reports whether owner, as VIPs reports it, is a VIP on its
// way from one running node to another.
func Releasing(owner string) (from, to string, ok bool) {
	return strings.Cut(owner, releaseSep)
}

// holder is the node that serves a VIP with this owner, or last served it
// while it is being released.
func holder(owner string) string {
	if from, _, ok := Releasing(owner); ok {
		return from
	}
	return owner
}

// CompleteRelease finishes a graceful move of vip away from this node,
// once this node has stopped serving it.
func (n *Node) CompleteRelease(ctx context.Context, vip netip.Addr) error {
	vip = vip.Unmap()
	owner := n.VIPs()[vip]
	from, to, ok := Releasing(owner)
	if !ok || from != n.opts.Cluster.NodeID {
		return fmt.Errorf("cluster: VIP %s is not being released by this node (owner %q)", vip, owner)
	}
	return n.SetVIPOwner(ctx, vip, owner, to)
}

// releaser completes the graceful moves away from this node: for each VIP
// being released by it, Options.Release, then CompleteRelease. A failed
// completion is retried on the next tick; a node out of contact waits.
func (n *Node) releaser() {
	defer n.wg.Done()
	t := time.NewTicker(min(n.opts.FailAfter/10, n.opts.Cluster.HeartbeatTimeout/2))
	defer t.Stop()
	self := n.opts.Cluster.NodeID
	released := map[netip.Addr]bool{} // Release called, completion pending
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		if !n.Serving() {
			continue
		}
		for vip, owner := range n.VIPs() {
			from, _, ok := Releasing(owner)
			if !ok || from != self {
				delete(released, vip)
				continue
			}
			if !released[vip] {
				if n.opts.Release != nil {
					n.opts.Release(vip)
				}
				released[vip] = true
			}
			ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
			err := n.CompleteRelease(ctx, vip)
			cancel()
			if err != nil {
				n.log.Warn("cluster: completing a VIP release", "vip", vip, "err", err)
				continue
			}
			n.log.Info("cluster: VIP released", "vip", vip, "owner", owner)
		}
	}
}
