package fsm

// Log versions. A replica that applied a command differently from its
// peers would diverge silently, so what the rules read grows in steps that
// every member must know before anyone uses them: LogVersion is the
// newest step this version applies. A node reports it when it registers
// (SetMember.log_version), and a command, or a field a rule reads, newer
// than what every member reports is refused at the edge (MembersKnow), so
// that an older member never applies it by ignoring what it does not know
// (cluster/DESIGN.md, "Rolling upgrades"). A member that predates the
// versions reports 0.
const (
	// LogRefusals: RecordRefusals, and the caller in every command.
	LogRefusals uint32 = 1
	// LogReviewed: SubmitPlan's expected_parent and expected_digest.
	LogReviewed uint32 = 2
	// LogRollback: RollbackPlan.
	LogRollback uint32 = 3
	// LogDoubt: ClusterConfig.max_plan_change, and the freeze on doubt it
	// turns on (doubt.go).
	LogDoubt uint32 = 4
	// LogMinHealthy: EndpointPlan.min_healthy_targets and
	// min_healthy_fraction, and the rule that reads them.
	LogMinHealthy uint32 = 5

	LogVersion = LogMinHealthy
)

// MembersKnow reports whether every recorded member runs a version that
// applies log version v.
func (s *State) MembersKnow(v uint32) bool {
	for _, m := range s.members {
		if m.GetLogVersion() < v {
			return false
		}
	}
	return true
}
