package planner

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves /metrics from g (the registry the planner's metrics went
// to, perhaps with process metrics) and /healthz: 200 while Run runs, with
// the planner's role and whether it has every probe result, 503 otherwise.
func (p *Planner) Handler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !p.running.Load() {
			http.Error(w, "planner not running", http.StatusServiceUnavailable)
			return
		}
		role := "standing by"
		if p.Leading() {
			role = "holds the planner lease"
		}
		probes := "every target probed"
		if !p.Ready() {
			probes = "waiting for the first probe of every target"
		}
		fmt.Fprintf(w, "ok: %s %s; %s\n", p.cfg.ID, role, probes)
	})
	return mux
}
