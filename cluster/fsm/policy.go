package fsm

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/contract"
	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// The cluster's policy: its design (fixed or legacy), fixed when the
// cluster is founded, and the velocity limit, changed by SetConfig. It is
// replicated state, so every replica judges every command by the same
// policy whatever its own flags say.

// Policy defaults and bounds.
const (
	DefaultMaxCapacityDrop = 0.5
	DefaultVelocityWindow  = time.Minute
	// MaxVelocityWindow bounds the window: the state keeps what every
	// endpoint served within it.
	MaxVelocityWindow = 24 * time.Hour
	// MaxServedRecords bounds the records kept per endpoint for the
	// velocity limit. An endpoint that changes more often than this within
	// one window loses its oldest records below the highest capacity
	// first (see recordServed).
	MaxServedRecords = 64
	// DefaultMaxPlanChange is the fraction of all endpoints a plan may
	// change at once before the cluster doubts it (doubt.go), octoDNS's
	// threshold.
	DefaultMaxPlanChange = 0.3
	// DefaultMaxVelocityRefusals is how many velocity refusals of one
	// endpoint within the window freeze the cluster (doubt.go);
	// MaxVelocityRefusalsLimit bounds the setting.
	DefaultMaxVelocityRefusals = 5
	MaxVelocityRefusalsLimit   = 100
	// DefaultMaxReadBackFailures is the share of members an enactor may
	// report not serving an applied plan before the cluster doubts itself
	// (doubt.go): more than half is not a slow node.
	DefaultMaxReadBackFailures = 0.5
)

// DefaultConfig is the policy of a state that was never founded: a state
// with no config behaves as a fixed cluster with the default limit.
func DefaultConfig() *pb.ClusterConfig {
	return &pb.ClusterConfig{
		Design:              pb.Design_DESIGN_FIXED,
		MaxCapacityDrop:     DefaultMaxCapacityDrop,
		VelocityWindow:      durationpb.New(DefaultVelocityWindow),
		MaxPlanChange:       proto.Float64(DefaultMaxPlanChange),
		MaxVelocityRefusals: proto.Uint32(DefaultMaxVelocityRefusals),
		MaxReadBackFailures: proto.Float64(DefaultMaxReadBackFailures),
	}
}

// ValidateConfig checks a whole policy, as founded.
func ValidateConfig(c *pb.ClusterConfig) error {
	if c == nil {
		return fmt.Errorf("%w: no config", ErrInvalid)
	}
	if d := c.GetDesign(); d != pb.Design_DESIGN_FIXED && d != pb.Design_DESIGN_LEGACY {
		return fmt.Errorf("%w: design must be fixed or legacy, not %v", ErrInvalid, d)
	}
	if err := ValidateMaxCapacityDrop(c.GetMaxCapacityDrop()); err != nil {
		return err
	}
	if c.MaxPlanChange != nil {
		if err := ValidateMaxPlanChange(c.GetMaxPlanChange()); err != nil {
			return err
		}
	}
	if err := ValidateMaxVelocityRefusals(c.GetMaxVelocityRefusals()); err != nil {
		return err
	}
	if c.MaxReadBackFailures != nil {
		if err := ValidateMaxReadBackFailures(c.GetMaxReadBackFailures()); err != nil {
			return err
		}
	}
	return ValidateVelocityWindow(c.GetVelocityWindow())
}

// ValidateSetConfig checks a change of policy: at least one setting, each
// valid. The design has no field: it never changes.
func ValidateSetConfig(r *pb.SetConfigRequest) error {
	if r.MaxCapacityDrop == nil && r.VelocityWindow == nil && r.MaxPlanChange == nil && r.MaxVelocityRefusals == nil && r.MaxReadBackFailures == nil {
		return fmt.Errorf("%w: nothing to change (set max_capacity_drop, velocity_window, max_plan_change, max_velocity_refusals or max_read_back_failures)", ErrInvalid)
	}
	if r.MaxReadBackFailures != nil {
		if err := ValidateMaxReadBackFailures(r.GetMaxReadBackFailures()); err != nil {
			return err
		}
	}
	if err := ValidateMaxVelocityRefusals(r.GetMaxVelocityRefusals()); err != nil {
		return err
	}
	if r.MaxPlanChange != nil {
		if err := ValidateMaxPlanChange(r.GetMaxPlanChange()); err != nil {
			return err
		}
	}
	if r.MaxCapacityDrop != nil {
		if err := ValidateMaxCapacityDrop(r.GetMaxCapacityDrop()); err != nil {
			return err
		}
	}
	if r.VelocityWindow != nil {
		return ValidateVelocityWindow(r.GetVelocityWindow())
	}
	return nil
}

// ValidateMaxCapacityDrop: a fraction in 0..1 (0: no drop without force,
// 1: no limit). Written so that NaN is refused.
func ValidateMaxCapacityDrop(f float64) error {
	if !(f >= 0 && f <= 1) {
		return fmt.Errorf("%w: max_capacity_drop %v outside 0..1", ErrInvalid, f)
	}
	return nil
}

// ValidateMaxPlanChange: a fraction in (0, 1] (1: no limit).
func ValidateMaxPlanChange(f float64) error {
	if !(f > 0 && f <= 1) {
		return fmt.Errorf("%w: max_plan_change %v outside (0, 1]", ErrInvalid, f)
	}
	return nil
}

// ValidateMaxReadBackFailures: a fraction in [0.5, 1] (1: never). Below
// a half, a minority of nodes cut off from the enactor, which the cluster
// rides out by design, would freeze it.
func ValidateMaxReadBackFailures(f float64) error {
	if !(f >= 0.5 && f <= 1) {
		return fmt.Errorf("%w: max_read_back_failures %v outside [0.5, 1]", ErrInvalid, f)
	}
	return nil
}

// ValidateMaxVelocityRefusals: 0 (never) or 2 to MaxVelocityRefusalsLimit
// (1 would freeze on the first refusal the velocity limit exists to make).
func ValidateMaxVelocityRefusals(n uint32) error {
	if n == 1 || n > MaxVelocityRefusalsLimit {
		return fmt.Errorf("%w: max_velocity_refusals %d: want 0 (never) or 2..%d", ErrInvalid, n, MaxVelocityRefusalsLimit)
	}
	return nil
}

// ValidateVelocityWindow: a duration in (0, MaxVelocityWindow].
func ValidateVelocityWindow(d *durationpb.Duration) error {
	if d == nil || d.CheckValid() != nil || d.AsDuration() <= 0 || d.AsDuration() > MaxVelocityWindow {
		return fmt.Errorf("%w: velocity_window must be a duration in (0, %s]", ErrInvalid, MaxVelocityWindow)
	}
	return nil
}

// Config returns the policy the cluster was founded with (as changed since),
// or nil before the founding command.
func (s *State) Config() *pb.ClusterConfig { return s.config }

// Policy is the policy in force: the founded one, or DefaultConfig.
func (s *State) Policy() *pb.ClusterConfig {
	if s.config == nil {
		return DefaultConfig()
	}
	return s.config
}

func (s *State) window() time.Duration { return s.Policy().GetVelocityWindow().AsDuration() }

// foundCluster sets the policy of a cluster that has none. The first ready
// leader proposes it from its flags; a founding that arrives after another
// (two leaders in quick succession) changes nothing: the first one wins.
func (s *State) foundCluster(index uint64, c *pb.ClusterConfig) Result {
	if s.config != nil {
		return Result{Config: s.config}
	}
	ev := s.event(index, kindConfig, "founding")
	s.trimServed(s.now.Add(-s.window()).UnixNano()) // as setConfig does
	s.trimVelocityRefusals(s.now.Add(-s.window()).UnixNano())
	s.config = proto.Clone(c).(*pb.ClusterConfig)
	setOutcome(ev, outcomeFounded)
	ev.Reason = describeConfig(s.config)
	s.record(ev)
	return Result{Config: s.config}
}

// setConfig changes the velocity settings of a founded cluster.
func (s *State) setConfig(index uint64, r *pb.SetConfigRequest) Result {
	ev := s.event(index, kindConfig, "operator")
	if s.config == nil {
		return s.reject(ev, fmt.Errorf("%w: retry once a leader is ready", ErrNotFounded))
	}
	c := proto.Clone(s.config).(*pb.ClusterConfig)
	if r.MaxCapacityDrop != nil {
		c.MaxCapacityDrop = r.GetMaxCapacityDrop()
	}
	if r.MaxPlanChange != nil {
		c.MaxPlanChange = r.MaxPlanChange
	}
	if r.MaxVelocityRefusals != nil {
		c.MaxVelocityRefusals = r.MaxVelocityRefusals
	}
	if r.MaxReadBackFailures != nil {
		c.MaxReadBackFailures = r.MaxReadBackFailures
	}
	if r.VelocityWindow != nil {
		// A window that grows must not bring back records the old one no
		// longer covered: whether a record was trimmed depends on when
		// its endpoint last changed (recordServed trims lazily), and
		// velocity must not. So every window is cut to the old window
		// first, and the new one covers only what the old one still did,
		// and what comes after.
		s.trimServed(s.now.Add(-s.window()).UnixNano())
		s.trimVelocityRefusals(s.now.Add(-s.window()).UnixNano())
		c.VelocityWindow = r.GetVelocityWindow()
	}
	s.config = c
	setOutcome(ev, outcomeChanged)
	ev.Reason = describeConfig(c)
	s.record(ev)
	return Result{Config: c}
}

func describeConfig(c *pb.ClusterConfig) string {
	d := fmt.Sprintf("design %s, max capacity drop %g, velocity window %s",
		contract.DesignOf(c.GetDesign()), c.GetMaxCapacityDrop(), c.GetVelocityWindow().AsDuration())
	if c.MaxPlanChange != nil {
		d += fmt.Sprintf(", max plan change %g", c.GetMaxPlanChange())
	}
	if c.MaxVelocityRefusals != nil {
		d += fmt.Sprintf(", max velocity refusals %d", c.GetMaxVelocityRefusals())
	}
	if c.MaxReadBackFailures != nil {
		d += fmt.Sprintf(", max read-back failures %g", c.GetMaxReadBackFailures())
	}
	return d
}

// requireLegacy refuses a legacy command on a cluster not founded legacy,
// whatever node leads: the unsafe rules run only where they were chosen.
func (s *State) requireLegacy() error {
	if d := s.Policy().GetDesign(); d != pb.Design_DESIGN_LEGACY {
		return fmt.Errorf("%w: the cluster was founded with the %s design, which refuses legacy commands", ErrDesign, contract.DesignOf(d))
	}
	return nil
}

// Capacity, for the velocity limit: what each address serves. A record's
// capacity is the sum of its weights; the capacity a new record retains
// against an earlier one is the sum over addresses of the smaller weight,
// so an address replaced by another counts as removed.

// servedWeights turns targets into sorted address weights, summing targets
// that share an address and leaving out weight 0. Addresses are written in
// their canonical form, so two spellings of one address are one address.
func servedWeights(targets []*pb.Target) []*statev1.ServedWeight {
	byAddr := make(map[string]uint64, len(targets))
	for _, t := range targets {
		if t.GetWeight() == 0 {
			continue
		}
		addr := t.GetAddress()
		if a, err := contract.ParseAddress(addr); err == nil {
			if canon := a.String(); canon != addr {
				addr = canon // else the target's own string is kept, not a copy
			}
		}
		byAddr[addr] += uint64(t.GetWeight())
	}
	out := make([]*statev1.ServedWeight, 0, len(byAddr))
	for a, w := range byAddr {
		out = append(out, &statev1.ServedWeight{Address: a, Weight: w})
	}
	slices.SortFunc(out, func(x, y *statev1.ServedWeight) int { return cmp.Compare(x.Address, y.Address) })
	return out
}

func capacityOf(ws []*statev1.ServedWeight) uint64 {
	var c uint64
	for _, w := range ws {
		c += w.Weight
	}
	return c
}

// retained is the capacity of old that next keeps: per address, the
// smaller of the two weights. Both lists are sorted by address.
func retained(old, next []*statev1.ServedWeight) uint64 {
	var kept uint64
	i, j := 0, 0
	for i < len(old) && j < len(next) {
		switch c := cmp.Compare(old[i].Address, next[j].Address); {
		case c < 0:
			i++
		case c > 0:
			j++
		default:
			kept += min(old[i].Weight, next[j].Weight)
			i++
			j++
		}
	}
	return kept
}

func sameWeights(a, b []*statev1.ServedWeight) bool {
	return slices.EqualFunc(a, b, func(x, y *statev1.ServedWeight) bool {
		return x.Address == y.Address && x.Weight == y.Weight
	})
}

// trimServed drops from every endpoint's window the records no longer
// served after cut (the current one stays).
func (s *State) trimServed(cut int64) {
	for name, w := range s.served {
		if recs := recordsAfter(w.Records, cut); len(recs) != len(w.Records) {
			s.served[name] = &statev1.ServedWindow{Endpoint: name, Records: recs}
		}
	}
}

// servedWithin returns the records of an endpoint served at some time
// within the velocity window ending now, the current one included.
func (s *State) servedWithin(name string) []*statev1.ServedRecord {
	w := s.served[name]
	if w == nil {
		return nil
	}
	return recordsAfter(w.Records, s.now.Add(-s.window()).UnixNano())
}

// recordsAfter returns, in a new slice, the records served at some time
// after cut: record i was served until record i+1 was applied, and the
// last one is served now.
func recordsAfter(recs []*statev1.ServedRecord, cut int64) []*statev1.ServedRecord {
	var out []*statev1.ServedRecord
	for i, r := range recs {
		if i+1 < len(recs) && recs[i+1].AppliedAtUnixNanos <= cut {
			continue
		}
		out = append(out, r)
	}
	return out
}

// checkVelocity is I7: unless forced, the records targets would serve must
// keep at least 1 - max_capacity_drop of the capacity of the highest
// record the endpoint served within the window (the current one
// included), a replaced address counting as removed. "Highest" is the
// largest capacity; records that tie for it are each judged. cur is what
// the endpoint serves now, judged too in case it predates the window's
// records (a state restored from before they were kept).
//
// Judging against every record of the window instead would refuse a
// health flap: {b}, then {a, b}, then {a} keeps all of the highest
// record's a, yet drops every address of the first record, and DNS would
// keep sending clients to the failed b for a whole window.
func (s *State) checkVelocity(name string, cur *pb.AppliedEndpoint, targets []*pb.Target) error {
	limit := s.Policy().GetMaxCapacityDrop()
	next := servedWeights(targets)
	records := s.servedWithin(name)
	if cur != nil {
		records = append(records, &statev1.ServedRecord{
			AppliedAtUnixNanos: cur.GetAppliedAt().AsTime().UnixNano(),
			Weights:            servedWeights(cur.GetTargets()),
		})
	}
	var highest uint64
	for _, r := range records {
		highest = max(highest, capacityOf(r.Weights))
	}
	if highest == 0 {
		return nil
	}
	for _, r := range records {
		if capacityOf(r.Weights) != highest {
			continue
		}
		kept := retained(r.Weights, next)
		drop := float64(highest-kept) / float64(highest)
		// Written so that a limit that is not a number refuses every drop.
		if !(drop <= limit) {
			return fmt.Errorf("%w: endpoint %q would keep %d of the capacity %d it served at %s (a drop of %.1f%%; limit %.1f%% within %s); a forced plan overrides",
				ErrVelocity, name, kept, highest, time.Unix(0, r.AppliedAtUnixNanos).UTC().Format(time.RFC3339Nano),
				drop*100, limit*100, s.window())
		}
	}
	return nil
}

// family is an address family an endpoint serves: A (IPv4) or AAAA (IPv6).
type family string

const (
	familyA    family = "IPv4 (A)"
	familyAAAA family = "IPv6 (AAAA)"
)

// servedFamilies reports which families have a target of weight > 0.
func servedFamilies(targets []*pb.Target) (a, aaaa bool) {
	for _, t := range targets {
		if t.GetWeight() == 0 {
			continue
		}
		addr, err := contract.ParseAddress(t.GetAddress())
		if err != nil {
			continue
		}
		if addr.Is4() {
			a = true
		} else {
			aaaa = true
		}
	}
	return a, aaaa
}

// checkFamilies is I2 per family: unless forced, every family an endpoint
// serves now keeps at least one address of weight > 0.
func checkFamilies(name string, cur *pb.AppliedEndpoint, targets []*pb.Target) error {
	if cur == nil {
		return nil
	}
	curA, curAAAA := servedFamilies(cur.GetTargets())
	nextA, nextAAAA := servedFamilies(targets)
	var lost family
	switch {
	case curA && !nextA:
		lost = familyA
	case curAAAA && !nextAAAA:
		lost = familyAAAA
	default:
		return nil
	}
	return fmt.Errorf("%w: endpoint %q serves %s now and the plan has no such address of weight > 0; a forced plan overrides",
		ErrFamily, name, lost)
}

// checkEndpointRules runs the per-endpoint rules of a non-forced change
// of endpoint ep (its name canonical): its minimum healthy, per-family
// I2, then velocity.
func (s *State) checkEndpointRules(ep *pb.EndpointPlan) error {
	if err := s.checkMinHealthy(ep); err != nil {
		return err
	}
	cur := s.servedRecords(ep.GetName())
	if err := checkFamilies(ep.GetName(), cur, ep.GetTargets()); err != nil {
		return err
	}
	return s.checkVelocity(ep.GetName(), cur, ep.GetTargets())
}

// checkMinHealthy: the endpoint serves at least its minimum healthy
// number of targets (contract.MinHealthy).
func (s *State) checkMinHealthy(ep *pb.EndpointPlan) error {
	need := contract.MinHealthy(ep)
	if need == 0 || !s.Active(LogMinHealthy) {
		return nil
	}
	served := 0
	for _, t := range ep.GetTargets() {
		if t.GetWeight() > 0 {
			served++
		}
	}
	if served < need {
		return fmt.Errorf("%w: endpoint %q would serve %d of its %d targets, below its minimum of %d; a forced plan overrides",
			ErrMinHealthy, ep.GetName(), served, len(ep.GetTargets()), need)
	}
	return nil
}

// recordServed appends what an endpoint serves from now on to its window,
// dropping records served before the window and, past MaxServedRecords,
// the oldest record below the window's highest capacity (the oldest of
// all only when every record ties for the highest). The highest record is
// what velocity is judged against, so a run of small changes cannot push
// it out of the window and step capacity down past the limit. A record
// equal to the current one adds nothing: the endpoint served the same all
// along. Windows are replaced, never changed in place, so clones and
// snapshots can share them.
func (s *State) recordServed(name string, targets []*pb.Target) {
	ws := servedWeights(targets)
	var recs []*statev1.ServedRecord
	if old := s.served[name]; old != nil {
		recs = recordsAfter(old.Records, s.now.Add(-s.window()).UnixNano())
		if n := len(recs); n > 0 && n == len(old.Records) && sameWeights(recs[n-1].Weights, ws) {
			return // nothing trimmed, nothing new: the window stays as it is
		}
	}
	if n := len(recs); n == 0 || !sameWeights(recs[n-1].Weights, ws) {
		recs = append(recs, &statev1.ServedRecord{AppliedAtUnixNanos: s.now.UnixNano(), Weights: ws})
	}
	for len(recs) > MaxServedRecords {
		var highest uint64
		for _, r := range recs {
			highest = max(highest, capacityOf(r.Weights))
		}
		drop := 0
		for i, r := range recs[:len(recs)-1] { // never the current record
			if capacityOf(r.Weights) < highest {
				drop = i
				break
			}
		}
		recs = slices.Delete(recs, drop, drop+1)
	}
	s.served[name] = &statev1.ServedWindow{Endpoint: name, Records: recs}
}

// Judge runs the per-endpoint rules of a non-forced change one by one, as
// an apply of endpoint ep would meet them now, and changes nothing: a
// preview (DiffPlans).
func (s *State) Judge(ep *pb.EndpointPlan) []*pb.RuleCheck {
	name, targets := contract.CanonicalName(ep.GetName()), ep.GetTargets()
	cur := s.servedRecords(name)
	verdict := func(rule string, err error) *pb.RuleCheck {
		if err == nil {
			return &pb.RuleCheck{Rule: rule, Ok: true}
		}
		return &pb.RuleCheck{Rule: rule, ReasonCode: string(Reason(err)), Reason: err.Error()}
	}
	return []*pb.RuleCheck{
		verdict("min_healthy", s.checkMinHealthy(ep)),
		verdict("family", checkFamilies(name, cur, targets)),
		verdict("velocity", s.checkVelocity(name, cur, targets)),
	}
}
