package fsm

import (
	"fmt"
	"slices"

	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
)

// Log versions. A replica that applied a command differently from its
// peers would diverge silently. So everything the rules do differently
// from an older version (a new command, a field a rule reads, state a
// rule keeps, what an event records) belongs to a numbered log version,
// and takes effect at one entry of the log on every replica: the state's
// active version (Active), raised by ActivateLog. A node registers the
// newest version it applies (SetMember.log_version; LogVersion here); the
// leader proposes ActivateLog once every member of the Raft configuration
// registered at least that version (cluster/activation.go); the edge
// refuses what needs a version not yet active (cluster: requireLog). A
// node that meets an ActivateLog above its own LogVersion stops, as it
// does for a command type it does not know (cluster/DESIGN.md, "Rolling
// upgrades"). A member that predates the versions registers 0.
const (
	// LogRefusals: RecordRefusals, and the caller in every event.
	LogRefusals uint32 = 1
	// LogReviewed: SubmitPlan's expected_parent and expected_digest, and
	// the digest stored with each plan.
	LogReviewed uint32 = 2
	// LogRollback: RollbackPlan, the records each endpoint keeps for it,
	// and each apply event's before and after.
	LogRollback uint32 = 3
	// LogDoubt: ClusterConfig.max_plan_change, and the freeze on doubt it
	// turns on (doubt.go).
	LogDoubt uint32 = 4
	// LogMinHealthy: EndpointPlan.min_healthy_targets and
	// min_healthy_fraction, and the rule that reads them.
	LogMinHealthy uint32 = 5
	// LogVelocityDoubt: ClusterConfig.max_velocity_refusals, and the
	// refusals the state counts for it (doubt.go).
	LogVelocityDoubt uint32 = 6
	// LogEnactorDoubt: ReportDoubt, ClusterConfig.max_read_back_failures,
	// and the freeze they turn on (doubt.go).
	LogEnactorDoubt uint32 = 7
	// LogDeltas: SubmitPlan's delta and remove_endpoints (a plan stored
	// as its parent with changes).
	LogDeltas uint32 = 8

	LogVersion = LogDeltas
)

// Active reports whether log version v is active in the cluster.
func (s *State) Active(v uint32) bool { return s.logVersion >= v }

// LogVersion is the cluster's active log version.
func (s *State) LogVersion() uint32 { return s.logVersion }

// MembersKnow reports whether every member in ids registered a version
// that applies log version v (a member not registered yet does not).
func (s *State) MembersKnow(v uint32, ids []string) bool {
	return len(ids) > 0 && !slices.ContainsFunc(ids, func(id string) bool {
		m := s.members[id]
		return m == nil || m.GetLogVersion() < v
	})
}

func validateActivate(a *statev1.ActivateLog) error {
	if a.GetVersion() == 0 {
		return fmt.Errorf("%w: log version 0", ErrInvalid)
	}
	return nil
}

// activateLog raises the active version; it never goes down.
func (s *State) activateLog(index uint64, a *statev1.ActivateLog) Result {
	if a.GetVersion() <= s.logVersion {
		return Result{}
	}
	ev := s.event(index, kindConfig, "cluster")
	s.logVersion = a.GetVersion()
	setOutcome(ev, outcomeChanged)
	ev.Reason = fmt.Sprintf("log version %d active: every member applies it", s.logVersion)
	s.record(ev)
	return Result{}
}
