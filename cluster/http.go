package cluster

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"
)

// httpHandler serves /metrics, /healthz (the process and Raft are up),
// /readyz (a leader is known and, on the leader, ready to serve reads; on
// the etcd store, the replica caught up and etcd answering) and
// a status page at / (the Status RPC as JSON).
func (n *Node) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if n.etcd == nil && n.raft.State().String() == "Shutdown" {
			http.Error(w, "raft is shut down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if n.etcd != nil {
			// No leader on etcd: ready is caught up and in touch.
			if st := n.etcd.state(); st != EtcdReady {
				http.Error(w, "etcd store: "+st, http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok: etcd store ready\n"))
			return
		}
		id, _ := n.leader()
		switch {
		case id == "":
			http.Error(w, "no leader known", http.StatusServiceUnavailable)
		case n.IsLeader() && n.readyTerm.Load() != n.raft.CurrentTerm():
			http.Error(w, "new leader still catching up", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ok: leader is " + id + "\n"))
		}
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		st, err := n.Status()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		b, err := protojson.MarshalOptions{Multiline: true, EmitUnpopulated: true}.Marshal(st)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(append(b, '\n'))
	})
	return mux
}
