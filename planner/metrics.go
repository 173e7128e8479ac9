package planner

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Why a submission was refused, the values of
// dnsplan_planner_plans_refused_total's label.
const (
	refusedVelocity = "velocity" // FAILED_PRECONDITION: over the velocity limit
	refusedFamily   = "family"   // FAILED_PRECONDITION: would empty an address family
	refusedInvalid  = "invalid"  // INVALID_ARGUMENT: should not happen, validate mirrors the cluster
	refusedError    = "error"    // no answer (unavailable) or another error
	refusedFenced   = "fenced"   // FAILED_PRECONDITION: another planner holds the lease
	// PARENT_MOVED: a plan was stored after the one a delta was made
	// against (by an operator, say); the next round makes it anew.
	refusedParentMoved = "parent_moved"
)

// metrics are one planner's Prometheus metrics.
type metrics struct {
	probes          *prometheus.CounterVec
	targetHealthy   *prometheus.GaugeVec
	targetsHealthy  prometheus.Gauge
	targets         prometheus.Gauge
	failOpen        *prometheus.GaugeVec
	submitted       prometheus.Counter
	unchanged       prometheus.Counter
	refused         *prometheus.CounterVec
	held            prometheus.Gauge
	generation      prometheus.Gauge
	leaseHeld       prometheus.Gauge
	reloads         prometheus.Counter
	reloadErrors    prometheus.Counter
	inventoryLoaded prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsplan_planner_probes_total",
			Help: "Health probes by result: success or failure.",
		}, []string{"result"}),
		targetHealthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dnsplan_planner_target_healthy",
			Help: "1 while the target counts as healthy (after rise/fall), 0 otherwise.",
		}, []string{"target"}),
		targetsHealthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dnsplan_planner_targets_healthy",
			Help: "Targets of the inventory that count as healthy.",
		}),
		targets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dnsplan_planner_targets",
			Help: "Distinct targets in the inventory.",
		}),
		failOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dnsplan_planner_fail_open",
			Help: "1 while every target of an address family of the endpoint is unhealthy and the plan keeps that family's targets at capacity.",
		}, []string{"endpoint"}),
		submitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dnsplan_planner_plans_submitted_total",
			Help: "Plans this planner stored.",
		}),
		unchanged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dnsplan_planner_plans_unchanged_total",
			Help: "Planning rounds whose records equalled the newest stored plan, so nothing was submitted.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsplan_planner_plans_refused_total",
			Help: "Submissions that failed, by reason: velocity, invalid or error. Never retried with force.",
		}, []string{"reason"}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dnsplan_planner_endpoints_held",
			Help: "Endpoints the last planning round held at their stored records because the cluster refused their change (velocity or family); the other endpoints' changes were submitted.",
		}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dnsplan_planner_submitted_generation",
			Help: "Generation of the last plan this planner stored.",
		}),
		leaseHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dnsplan_planner_lease_held",
			Help: "1 while this planner holds the planner lease and submits plans.",
		}),
		reloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dnsplan_planner_inventory_reloads_total",
			Help: "Changed inventories loaded after the start.",
		}),
		reloadErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dnsplan_planner_inventory_reload_errors_total",
			Help: "Inventory reloads refused (unreadable or invalid); the last good inventory stays.",
		}),
		inventoryLoaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dnsplan_planner_inventory_loaded_timestamp_seconds",
			Help: "When the inventory in use was loaded.",
		}),
	}
	for _, c := range []prometheus.Collector{m.probes, m.targetHealthy, m.targetsHealthy, m.targets, m.failOpen,
		m.submitted, m.unchanged, m.refused, m.held, m.generation, m.leaseHeld, m.reloads, m.reloadErrors, m.inventoryLoaded} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Every fixed series exists from the start, so dashboards and alerts
	// see a zero rather than nothing.
	for _, r := range []string{"success", "failure"} {
		m.probes.WithLabelValues(r)
	}
	for _, r := range []string{refusedVelocity, refusedFamily, refusedInvalid, refusedError, refusedParentMoved} {
		m.refused.WithLabelValues(r)
	}
	return m, nil
}
