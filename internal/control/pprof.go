package control

import (
	"net/http"
	"net/http/pprof"
)

// mountPprof serves Go's runtime profiles under /debug/pprof/ on mux.
//
// They live on the control socket because it is already root-only (mode
// 0600): a CPU or heap profile reveals code paths and memory layout, and
// must not be reachable from the network the daemon listens on. The
// handlers go on this explicit mux rather than http.DefaultServeMux, which
// importing net/http/pprof also fills, so that nothing else serving the
// default mux (a metrics listener, say) exposes them by accident.
//
//	curl --unix-socket /run/hike/control.sock -o cpu.pb.gz \
//	    'http://hike/debug/pprof/profile?seconds=15'
//	go tool pprof -top cpu.pb.gz
func mountPprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index) // heap, goroutine, allocs, block, mutex, ... by name
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}
