package enactor

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves /metrics from g (the registry the enactor's metrics went
// to) and /healthz: 200 while Run runs, saying which leases it holds (a
// standby is healthy too), 503 otherwise.
func (e *Enactor) Handler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !e.running.Load() {
			http.Error(w, "enactor not running", http.StatusServiceUnavailable)
			return
		}
		held := e.Leases()
		if len(held) == 0 {
			fmt.Fprintf(w, "ok: %s standing by\n", e.cfg.ID)
			return
		}
		var parts []string
		for name, token := range held {
			parts = append(parts, fmt.Sprintf("%s (token %d)", name, token))
		}
		slices.Sort(parts)
		fmt.Fprintf(w, "ok: %s holds %s\n", e.cfg.ID, strings.Join(parts, ", "))
	})
	return mux
}
