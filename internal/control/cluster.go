package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/hike-vpn/hike/internal/cluster"
)

// The cluster part of the API, served only by cluster members:
//
//	GET  /v1/cluster             200 cluster.Status
//	POST /v1/cluster/handback    {"node": ID} (body optional: this node) → 200 HandbackResult
//	POST /v1/cluster/join        200 {} once this node is a voter again
//	POST /v1/cluster/leave       200 {} once this node has left the voters

// ClusterService is what a Service that is a cluster member (`hike serve`
// with a cluster section, `hike witness`) adds.
type ClusterService interface {
	ClusterStatus() cluster.Status
	// Handback moves the VIPs configured on node back to it; "" names
	// this node.
	Handback(ctx context.Context, node string) (moved int, err error)
	Join(ctx context.Context) error
	Leave(ctx context.Context) error
}

// HandbackRequest is the body of POST /v1/cluster/handback.
type HandbackRequest struct {
	Node    string `json:"node,omitempty"`
	Timeout string `json:"timeout,omitempty"`
}

// HandbackResult answers it.
type HandbackResult struct {
	Node  string `json:"node"`
	Moved int    `json:"moved"`
}

var errNotMember = fmt.Errorf("%w: this daemon is not a cluster member (its configuration has no cluster section)", ErrNotAvailable)

func (h *handler) clusterSvc(w http.ResponseWriter) (ClusterService, bool) {
	cs, ok := h.svc.(ClusterService)
	if !ok {
		writeServiceError(w, errNotMember)
	}
	return cs, ok
}

// clusterOp starts a cluster operation: the service, the body decoded
// into req, and a context bounded by the timeout the body names.
func (h *handler) clusterOp(w http.ResponseWriter, r *http.Request, req any, timeout *string) (ClusterService, context.Context, context.CancelFunc, bool) {
	cs, ok := h.clusterSvc(w)
	if !ok || !decode(w, r, req) {
		return nil, nil, nil, false
	}
	d, ok := h.wait(w, *timeout)
	if !ok {
		return nil, nil, nil, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	return cs, ctx, cancel, true
}

func (h *handler) clusterStatus(w http.ResponseWriter, _ *http.Request) {
	if cs, ok := h.clusterSvc(w); ok {
		writeJSON(w, http.StatusOK, cs.ClusterStatus())
	}
}

func (h *handler) clusterHandback(w http.ResponseWriter, r *http.Request) {
	var req HandbackRequest
	cs, ctx, cancel, ok := h.clusterOp(w, r, &req, &req.Timeout)
	if !ok {
		return
	}
	defer cancel()
	node := req.Node
	if node == "" {
		node = cs.ClusterStatus().Node
	}
	n, err := cs.Handback(ctx, node)
	if err != nil {
		writeClusterError(w, err)
		return
	}
	h.log.Info("control: handback", "node", node, "vips", n)
	writeJSON(w, http.StatusOK, HandbackResult{Node: node, Moved: n})
}

func (h *handler) clusterMembership(join bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req WaitRequest
		cs, ctx, cancel, ok := h.clusterOp(w, r, &req, &req.Timeout)
		if !ok {
			return
		}
		defer cancel()
		op, what := cs.Leave, "leave"
		if join {
			op, what = cs.Join, "join"
		}
		if err := op(ctx); err != nil {
			writeClusterError(w, fmt.Errorf("%s: %w", what, err))
			return
		}
		h.log.Info("control: cluster " + what)
		writeJSON(w, http.StatusOK, struct{}{})
	}
}

func writeClusterError(w http.ResponseWriter, err error) {
	if errors.Is(err, context.DeadlineExceeded) {
		writeError(w, http.StatusGatewayTimeout, CodeTimeout, err.Error())
		return
	}
	writeServiceError(w, err)
}
