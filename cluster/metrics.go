package cluster

import (
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dnsplan/dnsplan/cluster/fsm"
)

// metrics are one node's Prometheus metrics, on a registry of its own so
// several nodes can run in one process (tests, dnsplan dev).
type metrics struct {
	registry  *prometheus.Registry
	propose   *prometheus.HistogramVec
	commands  *prometheus.CounterVec
	rejected  *prometheus.CounterVec
	forwarded *prometheus.CounterVec
	refused   *prometheus.CounterVec // calls refused for the caller's role or name
	// timeClipped and timeJumps count commands whose stamp the state
	// machine clipped, or that moved its time by more than
	// fsm.TimeJumpThreshold.
	timeClipped prometheus.Counter
	timeJumps   prometheus.Counter
	// doubtFreezes counts the freezes the cluster made by itself.
	doubtFreezes prometheus.Counter
	log          *slog.Logger
}

func newMetrics(n *Node) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		registry: reg,
		propose: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dnsplan_propose_seconds",
			Help:    "Time from proposing a command on the leader to its result: commit plus apply.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"command"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsplan_commands_applied_total",
			Help: "Commands applied by this node's state machine, by command and outcome (ok or a rejection reason).",
		}, []string{"command", "outcome"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsplan_rejections_total",
			Help: "Commands the state machine rejected, by reason (fenced, velocity, frozen, ...).",
		}, []string{"reason"}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsplan_forwarded_requests_total",
			Help: "Requests this node forwarded to the leader, by outcome.",
		}, []string{"outcome"}),
		timeClipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dnsplan_fsm_time_clipped_total",
			Help: "Commands whose stamp was more than the largest step ahead of the state machine's time, so time moved by that step only.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsplan_refused_calls_total",
			Help: "Calls refused for their caller's role or name (PERMISSION_DENIED), by role and method.",
		}, []string{"role", "method"}),
		doubtFreezes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dnsplan_doubt_freezes_total",
			Help: "Times the cluster froze itself on doubt (a plan changing more endpoints at once than max_plan_change), as this node applied them.",
		}),
		timeJumps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dnsplan_fsm_time_jumps_total",
			Help: "Commands that moved the state machine's time forward by more than the jump threshold.",
		}),
		log: n.log,
	}
	stateGauge := func(name, help string, f func(*fsm.State) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			var v float64
			n.machine.read(func(s *fsm.State) { v = f(s) })
			return v
		})
	}
	raftGauge := func(name, help string, f func(*raft.Raft) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(n.raft) })
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.propose, m.commands, m.rejected, m.forwarded, m.timeClipped, m.timeJumps, m.refused, m.doubtFreezes,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dnsplan_insecure",
			Help: "1 if this node runs without TLS (--insecure): its API and Raft port accept anyone.",
		}, func() float64 { return boolFloat(n.cfg.TLS == nil) }),
		stateGauge("dnsplan_plans", "Plans stored.", func(s *fsm.State) float64 { return float64(s.NumPlans()) }),
		stateGauge("dnsplan_applied_endpoints", "Endpoints with applied records.", func(s *fsm.State) float64 { return float64(s.NumApplied()) }),
		stateGauge("dnsplan_next_generation", "Generation the next plan gets.", func(s *fsm.State) float64 { return float64(s.NextGeneration()) }),
		stateGauge("dnsplan_frozen", "1 while applies are frozen.", func(s *fsm.State) float64 {
			f, _ := s.Frozen()
			return boolFloat(f)
		}),
	)
	if n.cfg.Store == StoreEtcd {
		// n.etcd is set before the HTTP endpoint serves a scrape.
		etcdGauge := func(name, help string, f func(*etcdStore) float64) prometheus.Collector {
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(n.etcd) })
		}
		reg.MustRegister(
			etcdGauge("dnsplan_etcd_ready", "1 once the replica has caught up with the etcd log and the node proposes.", func(s *etcdStore) float64 {
				return boolFloat(s.ready.Load())
			}),
			etcdGauge("dnsplan_etcd_linearizable_revision", "Revision of the etcd log's newest entry, as last read from an etcd quorum.", func(s *etcdStore) float64 {
				return float64(s.linearizable.Load())
			}),
			stateGauge("dnsplan_etcd_applied_revision", "Revision of the last etcd log entry the replica applied.", func(s *fsm.State) float64 { return float64(s.LastIndex()) }),
			etcdGauge("dnsplan_clock_skew_seconds", "This node's wall clock minus the time it last stamped on a command (every node on etcd stamps its own).", func(*etcdStore) float64 {
				return time.Duration(n.skew.Load()).Seconds()
			}),
		)
		return m
	}
	reg.MustRegister(
		raftGauge("dnsplan_raft_leader", "1 if this node is the Raft leader.", func(r *raft.Raft) float64 {
			return boolFloat(r.State() == raft.Leader)
		}),
		raftGauge("dnsplan_raft_state", "Raft state: 0 follower, 1 candidate, 2 leader, 3 shutdown.", func(r *raft.Raft) float64 {
			return float64(r.State())
		}),
		raftGauge("dnsplan_raft_term", "Current Raft term.", func(r *raft.Raft) float64 { return float64(r.CurrentTerm()) }),
		raftGauge("dnsplan_raft_commit_index", "Raft commit index.", func(r *raft.Raft) float64 { return float64(r.CommitIndex()) }),
		raftGauge("dnsplan_raft_applied_index", "Raft applied index.", func(r *raft.Raft) float64 { return float64(r.AppliedIndex()) }),
		raftGauge("dnsplan_clock_skew_seconds", "On the leader, its wall clock minus the time it last stamped on a command; 0 elsewhere.", func(r *raft.Raft) float64 {
			if r.State() != raft.Leader {
				return 0
			}
			return time.Duration(n.skew.Load()).Seconds()
		}),
	)
	return m
}

// observe is the state machine's hook: it runs on every replica for every
// applied command.
func (m *metrics) observe(c fsm.Command, r fsm.Result) {
	outcome := "ok"
	if r.Err != nil {
		outcome = fsm.Reason(r.Err).Metric()
		if outcome == "" {
			outcome = "other"
		}
		m.rejected.WithLabelValues(outcome).Inc()
	}
	m.commands.WithLabelValues(c.Type().String(), outcome).Inc()
	if r.TimeClipped > 0 {
		m.timeClipped.Inc()
		m.log.Warn("command stamped far ahead of the state machine's time; time moved by the largest step only",
			"command", c.Type().String(), "stamp", c.Stamp, "clipped", r.TimeClipped, "step", fsm.MaxTimeStep)
	}
	if r.Doubt != "" {
		m.doubtFreezes.Inc()
		m.log.Warn("the cluster froze itself on doubt", "command", c.Type().String(), "reason", r.Doubt)
	}
	if r.TimeJump > 0 {
		m.timeJumps.Inc()
		m.log.Warn("state machine's time jumped: the cluster was idle, or a new leader's clock is ahead",
			"command", c.Type().String(), "stamp", c.Stamp, "jump", r.TimeJump)
	}
}

func (m *metrics) observePropose(t fsm.CommandType, start time.Time) {
	m.propose.WithLabelValues(t.String()).Observe(time.Since(start).Seconds())
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
