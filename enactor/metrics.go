package enactor

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Apply outcomes, the values of dnsplan_enactor_applies_total's label.
const (
	outcomeApplied  = "applied"   // at least one endpoint now serves the plan
	outcomeStale    = "stale"     // every endpoint already served a newer generation
	outcomeRefused  = "refused"   // some endpoint refused it (velocity, ...), none newly serves it
	outcomeFenced   = "fenced"    // the token is not the lease's current one
	outcomeFrozen   = "frozen"    // an operator switched applies off
	outcomeNotFound = "not_found" // the plan was deleted by clean-up
	outcomeHeld     = "held"      // the cluster holds the plan for review (freeze on doubt)
	outcomeError    = "error"     // no answer (unavailable) or another error
)

// metrics are one enactor's Prometheus metrics.
type metrics struct {
	leasesHeld        *prometheus.GaugeVec
	appliedGeneration *prometheus.GaugeVec
	applies           *prometheus.CounterVec
	endpoints         *prometheus.CounterVec
	convergence       prometheus.Histogram
	convergeTimeouts  prometheus.Counter
	cleanups          *prometheus.CounterVec
	plansDeleted      prometheus.Counter
	plansFoundByRead  prometheus.Counter
	watchErrors       *prometheus.CounterVec
	refused           *prometheus.CounterVec
	doubtReports      *prometheus.CounterVec
	waves             *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, shards int) (*metrics, error) {
	m := &metrics{
		leasesHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dnsplan_enactor_leases_held",
			Help: "1 while this enactor holds the lease.",
		}, []string{"lease"}),
		appliedGeneration: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dnsplan_enactor_applied_generation",
			Help: "The newest generation this enactor had applied (or found applied) under the lease.",
		}, []string{"lease"}),
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsplan_enactor_applies_total",
			Help: "ApplyPlan calls by outcome: applied, stale, refused, fenced, frozen, not_found, error.",
		}, []string{"outcome"}),
		endpoints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsplan_enactor_endpoint_results_total",
			Help: "Endpoints in answered ApplyPlan calls, by outcome: applied (serves the generation), stale or refused.",
		}, []string{"outcome"}),
		convergence: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dnsplan_enactor_convergence_seconds",
			Help:    "Time from sending an apply until every node served its generation or newer.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		convergeTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dnsplan_enactor_convergence_timeouts_total",
			Help: "Applies after which some node did not serve the generation within --converge-timeout.",
		}),
		cleanups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsplan_enactor_cleanups_total",
			Help: "CleanupPlans calls by outcome: ok, refused (frozen) or error.",
		}, []string{"outcome"}),
		plansDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dnsplan_enactor_plans_deleted_total",
			Help: "Plans deleted by this enactor's clean-ups.",
		}),
		plansFoundByRead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dnsplan_enactor_plans_found_by_read_total",
			Help: "Plans the periodic newest-plan read learned before the watch stream delivered them (a quiet or stuck watch).",
		}),
		watchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsplan_enactor_watch_errors_total",
			Help: "Plan watches that ended with an answer reconnecting cannot cure, by gRPC code (e.g. ResourceExhausted: a plan over a message limit).",
		}, []string{"code"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsplan_enactor_refused_total",
			Help: "Endpoints the cluster refused in answered ApplyPlan calls (OUTCOME_REFUSED), by reason (velocity, family, ...).",
		}, []string{"reason"}),
		doubtReports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsplan_enactor_doubt_reports_total",
			Help: "Reports of doubt sent to the cluster (ReportDoubt), by kind (read_back, rollout) and answer: frozen (the cluster is frozen after it), noted (below the cluster's threshold), fenced (the lease moved on) or error.",
		}, []string{"kind", "answer"}),
		waves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsplan_enactor_rollout_waves_total",
			Help: "Checks of staged-rollout waves (--waves), by outcome: passed (read back and baked: the next wave may go), stopped (a member serving an older generation, or a newer plan marking the wave's new targets unhealthy: reported) or held (refused whole, or a majority of members not answering: tried again later).",
		}, []string{"outcome"}),
	}
	for _, c := range []prometheus.Collector{m.leasesHeld, m.appliedGeneration, m.applies, m.endpoints,
		m.convergence, m.convergeTimeouts, m.cleanups, m.plansDeleted, m.plansFoundByRead, m.watchErrors, m.refused,
		m.doubtReports, m.waves} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Every series exists from the start, so dashboards and alerts see a
	// zero rather than nothing.
	for i := range shards {
		m.leasesHeld.WithLabelValues(LeaseName(i))
	}
	for _, o := range []string{outcomeApplied, outcomeStale, outcomeRefused, outcomeFenced, outcomeFrozen, outcomeNotFound, outcomeHeld, outcomeError} {
		m.applies.WithLabelValues(o)
	}
	for _, o := range []string{outcomeApplied, outcomeStale, outcomeRefused} {
		m.endpoints.WithLabelValues(o)
	}
	for _, k := range []string{"read_back", "rollout"} {
		for _, a := range []string{"frozen", "noted", "fenced", "error"} {
			m.doubtReports.WithLabelValues(k, a)
		}
	}
	for _, o := range []string{"passed", "stopped", "held"} {
		m.waves.WithLabelValues(o)
	}
	for _, o := range []string{"ok", "refused", "error"} {
		m.cleanups.WithLabelValues(o)
	}
	return m, nil
}
