package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"pgregory.net/rapid"

	"github.com/dnsplan/dnsplan/contract"
	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// The property tests drive one State with random interleavings of every
// command and hold it, after every step, to the invariants of docs/DESIGN.md
// section 3. The reference is the model below: the test's own bookkeeping
// of what the rules say should happen, written without calling the code
// under test (only ValidatePlan is called, because I6 is literally "every
// stored plan passes ValidatePlan").
//
// Failure messages start with the invariant they break (I1, I2, I3, I4,
// I6, I7, FREEZE, CLEANUP, TIME, RESTORE) or MODEL when the state disagrees
// with the model on something that is not itself an invariant.

// The generators' vocabulary. The model knows which entries are valid
// from these lists, not from the package's validators.
var (
	propEndpoints = []string{"api.dnsplan.test.", "fips.dnsplan.test.", "v6.dnsplan.test."}
	// propRequestNames are the endpoint names an apply may ask for: the
	// plan's, one in upper case, one valid name in no plan.
	propRequestNames = []string{
		"api.dnsplan.test.", "fips.dnsplan.test.", "v6.dnsplan.test.",
		"API.DNSPLAN.TEST.", "unknown.dnsplan.test.",
	}
	propGoodAddrs = []string{"192.0.2.10", "192.0.2.11", "198.51.100.7", "2001:db8::1", "2001:db8::2"}
	propBadAddrs  = []string{"::ffff:192.0.2.10", "fe80::1%eth0", "0.0.0.0", "::", "not-an-ip", "", "192.0.2.256"}
	propBadNames  = []string{"api.dnsplan.test", "", ".", "-api.dnsplan.test.", "api..dnsplan.test.", "api dnsplan.test."}
	propWeights   = []uint32{0, 0, 1, 3, 10, 50, 100}
	propEnactors  = []string{"enactor-a", "enactor-b", "enactor-c"}
	propLeases    = []string{"enactor", "enactor-fips"}
	propTTLs      = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}
	propBadTTLs   = []time.Duration{0, 10 * time.Millisecond, 2 * time.Hour}
	propMaxDrops  = []float64{0.5, 0.25, 1, 0}
	propWindows   = []time.Duration{time.Minute, 5 * time.Second, time.Second, 10 * time.Minute}
	// propKinds weighs the commands: rapid favours the first entries of
	// a list, so the commands that matter most come first and repeat.
	propKinds = []string{
		"apply", "acquire", "submit", "apply", "renew", "delta", "submit",
		"apply", "cleanup", "acquire", "config", "member", "release", "freeze", "apply",
		"doubt", "delta",
	}
)

// modelGoodName is the set of endpoint names, in canonical form, that are
// valid fully qualified names in the vocabulary above.
var modelGoodName = map[string]bool{
	"api.dnsplan.test.": true, "fips.dnsplan.test.": true, "v6.dnsplan.test.": true,
	"unknown.dnsplan.test.": true,
}

var modelGoodAddr = func() map[string]bool {
	m := map[string]bool{}
	for _, a := range propGoodAddrs {
		m[a] = true
	}
	return m
}()

type modelLease struct {
	holder  string
	token   uint64
	expires time.Time
	ttl     time.Duration
}

type modelApplied struct {
	gen     uint64
	ttl     uint32
	targets []*pb.Target
	enactor string
	token   uint64
}

// modelRecord is what an endpoint served from at on: address -> weight,
// weights of 0 left out.
type modelRecord struct {
	at time.Time
	w  map[string]uint64
}

func modelWeights(targets []*pb.Target) map[string]uint64 {
	w := map[string]uint64{}
	for _, tg := range targets {
		if tg.Weight > 0 {
			w[tg.Address] += uint64(tg.Weight)
		}
	}
	return w
}

// modelDrop is the fraction of old's capacity that next removes, counting
// a replaced address as removed.
func modelDrop(old, next map[string]uint64) float64 {
	var was, kept uint64
	for a, w := range old {
		was += w
		kept += min(w, next[a])
	}
	if was == 0 {
		return 0
	}
	return float64(was-kept) / float64(was)
}

// modelFamilies reports whether targets serve IPv4 and IPv6.
func modelFamilies(targets []*pb.Target) (v4, v6 bool) {
	for _, tg := range targets {
		if tg.Weight > 0 {
			if strings.Contains(tg.Address, ":") {
				v6 = true
			} else {
				v4 = true
			}
		}
	}
	return v4, v6
}

// model is the test's independent picture of what the state should be.
type model struct {
	index   uint64
	stamp   time.Time // the last stamp sent; may go backwards
	now     time.Time // the state machine's time (see advanceTime)
	nextGen uint64
	plans   map[uint64]*pb.Plan // stored, as the state should hold them
	everGen map[uint64]bool     // every generation ever assigned
	maxGen  uint64
	// maxDrop and window are the cluster's velocity policy; a state that
	// was never founded has the defaults.
	maxDrop float64
	window  time.Duration
	founded bool
	// keptSince: a record whose successor was applied at or before it
	// was outside the window when the window was last set, and is gone
	// for good (a window that grows covers only what the old one still
	// did).
	keptSince time.Time
	// served is the velocity window per endpoint as the rules keep it
	// (trimmed at each apply); servedLog is every record ever applied,
	// never trimmed, for the independent I7 check.
	served    map[string][]modelRecord
	servedLog map[string][]modelRecord
	applied   map[string]modelApplied
	leases    map[string]*modelLease
	granted   []uint64        // every token ever granted
	retired   map[uint64]bool // tokens superseded or released: dead forever
	frozen    bool
	members   map[string]*statev1.SetMember
	// readBackLimit is max_read_back_failures: the default before the
	// founding, then the founding's (nil: never).
	readBackLimit *float64
	// refusals are, per endpoint, the velocity refusals of different
	// changes that count towards the freeze on doubt, refusalLimit
	// max_velocity_refusals: the default before the founding, then the
	// founding's (none: 0, never).
	refusals     map[string][]modelRefusal
	refusalLimit int
	// lastSubmit is the last submission drawn, which a draw may repeat.
	lastSubmit *statev1.SubmitPlan
}

type modelRefusal struct {
	at    time.Time
	asked string
}

// modelAsked names the records a change asks for: its weights by address.
func modelAsked(targets []*pb.Target) string {
	w := modelWeights(targets)
	var b strings.Builder
	for _, a := range slices.Sorted(maps.Keys(w)) {
		fmt.Fprintf(&b, "%s=%d;", a, w[a])
	}
	return b.String()
}

// noteRefusal counts a velocity refusal of a change of endpoint name to
// targets, as max_velocity_refusals says: refusals of the same change
// count once, those older than the window not at all, and none while
// frozen. It says whether the cluster freezes now.
func (m *model) noteRefusal(name string, targets []*pb.Target) bool {
	if m.refusalLimit == 0 || m.frozen {
		return false
	}
	asked := modelAsked(targets)
	kept := []modelRefusal{}
	for _, r := range m.refusals[name] {
		if r.at.After(m.now.Add(-m.window)) && r.asked != asked {
			kept = append(kept, r)
		}
	}
	kept = append(kept, modelRefusal{at: m.now, asked: asked})
	if len(kept) < m.refusalLimit {
		m.refusals[name] = kept
		return false
	}
	delete(m.refusals, name)
	m.frozen = true
	return true
}

func newModel() *model {
	return &model{
		stamp:     t0,
		nextGen:   1,
		plans:     map[uint64]*pb.Plan{},
		everGen:   map[uint64]bool{},
		maxDrop:   DefaultMaxCapacityDrop,
		window:    DefaultVelocityWindow,
		served:    map[string][]modelRecord{},
		servedLog: map[string][]modelRecord{},
		applied:   map[string]modelApplied{},
		leases:    map[string]*modelLease{},
		retired:   map[uint64]bool{},
		members:   map[string]*statev1.SetMember{},

		readBackLimit: proto.Float64(DefaultMaxReadBackFailures),
		refusals:      map[string][]modelRefusal{},
		refusalLimit:  DefaultMaxVelocityRefusals,
	}
}

// draw generates the next command: a random kind, a payload that is often
// plausible (current tokens, live generations) and sometimes not, and a
// stamp that usually moves forward and sometimes goes back.
func (m *model) draw(t *rapid.T) Command {
	dt := rapid.IntRange(-1000, 2000).Draw(t, "dt_ms")
	m.stamp = m.stamp.Add(time.Duration(dt) * time.Millisecond)
	stamp := m.stamp
	if rapid.IntRange(0, 99).Draw(t, "clock_jump") == 0 {
		// One command from a leader whose clock is far ahead or behind.
		stamp = stamp.Add(rapid.SampledFrom([]time.Duration{-24 * time.Hour, MaxTimeStep / 2, 3 * MaxTimeStep, 365 * 24 * time.Hour}).Draw(t, "jump"))
	}
	var p proto.Message
	switch kind := rapid.SampledFrom(propKinds).Draw(t, "kind"); kind {
	case "submit", "delta":
		switch {
		case m.lastSubmit != nil && rapid.IntRange(0, 3).Draw(t, "resubmit") == 0:
			// A planner retrying every round asks the same again.
			p = proto.Clone(m.lastSubmit)
		case kind == "submit":
			p = m.drawSubmit(t)
		default:
			p = m.drawDelta(t)
		}
		m.lastSubmit = p.(*statev1.SubmitPlan)
	case "acquire":
		p = m.drawAcquire(t)
	case "renew":
		name, holder, token := m.drawFence(t)
		p = &pb.RenewLeaseRequest{Name: name, Holder: holder, Token: token}
	case "release":
		name, holder, token := m.drawFence(t)
		p = &pb.ReleaseLeaseRequest{Name: name, Holder: holder, Token: token}
	case "apply":
		p = m.drawApply(t)
	case "cleanup":
		p = &pb.CleanupPlansRequest{KeepLast: uint32(rapid.IntRange(0, 5).Draw(t, "keep_last"))}
	case "config":
		p = m.drawConfig(t)
	case "freeze":
		on := rapid.IntRange(0, 4).Draw(t, "freeze") == 2
		p = &pb.SetFreezeRequest{Frozen: on, Reason: "operator " + rapid.SampledFrom([]string{"x", "y"}).Draw(t, "reason")}
	case "doubt":
		p = m.drawDoubt(t)
	case "member":
		id := rapid.SampledFrom([]string{"n1", "n2"}).Draw(t, "member")
		if rapid.Bool().Draw(t, "remove") {
			p = &statev1.RemoveMember{Id: id}
		} else {
			p = &statev1.SetMember{Id: id, RaftAddr: "127.0.0.1:7001", GrpcAddr: "127.0.0.1:9001"}
		}
	}
	return Command{Stamp: stamp, Payload: p}
}

func (m *model) drawSubmit(t *rapid.T) *statev1.SubmitPlan {
	p := &pb.Plan{PlannerId: rapid.SampledFrom([]string{"planner-1", "planner-2"}).Draw(t, "planner")}
	names := rapid.Permutation(propEndpoints).Draw(t, "endpoints")
	n := rapid.IntRange(1, len(names)).Draw(t, "n_endpoints")
	for _, name := range names[:n] {
		if rapid.IntRange(0, 9).Draw(t, "upper") == 0 {
			name = strings.ToUpper(name)
		}
		p.Endpoints = append(p.Endpoints, drawEndpoint(t, name))
	}
	if rapid.IntRange(0, 5).Draw(t, "corrupt") == 0 {
		ep := p.Endpoints[0]
		switch rapid.IntRange(0, 8).Draw(t, "corruption") {
		case 0:
			ep.Targets = nil
		case 1:
			for _, tg := range ep.Targets {
				tg.Weight = 0
			}
		case 2:
			ep.Ttl = 0
		case 3:
			ep.Ttl = 86401
		case 4:
			ep.Name = rapid.SampledFrom(propBadNames).Draw(t, "bad_name")
		case 5:
			ep.Targets = append(ep.Targets, &pb.Target{Id: ep.Targets[0].Id, Address: "192.0.2.99", Weight: 1})
		case 6:
			ep.Targets[0].Address = rapid.SampledFrom(propBadAddrs).Draw(t, "bad_addr")
		case 7:
			dup := proto.Clone(ep).(*pb.EndpointPlan)
			dup.Name = strings.ToUpper(dup.Name)
			p.Endpoints = append(p.Endpoints, dup)
		case 8:
			p.Endpoints = nil
		}
	}
	return &statev1.SubmitPlan{
		Plan:           p,
		Force:          rapid.IntRange(0, 3).Draw(t, "force") == 0,
		ExpectedParent: m.drawParent(t),
	}
}

// drawEndpoint is an endpoint of one to four targets.
func drawEndpoint(t *rapid.T, name string) *pb.EndpointPlan {
	ep := &pb.EndpointPlan{Name: name, Ttl: rapid.SampledFrom([]uint32{30, 60, 300}).Draw(t, "ttl")}
	k := rapid.IntRange(1, 4).Draw(t, "n_targets")
	for j := 0; j < k; j++ {
		ep.Targets = append(ep.Targets, &pb.Target{
			Id:      fmt.Sprintf("lb-%d", j),
			Address: rapid.SampledFrom(propGoodAddrs).Draw(t, "addr"),
			Weight:  rapid.SampledFrom(propWeights).Draw(t, "weight"),
		})
	}
	return ep
}

// drawParent is a submission's expected parent: none (whole plans,
// mostly), the newest generation, or one that is not the newest (a
// planner that read an older chain).
func (m *model) drawParent(t *rapid.T) *uint64 {
	switch rapid.IntRange(0, 5).Draw(t, "parent_kind") {
	case 0:
		return proto.Uint64(m.nextGen - 1)
	case 1:
		return proto.Uint64(uint64(rapid.IntRange(0, int(m.nextGen)+1).Draw(t, "other_parent")))
	}
	return nil
}

// drawDelta is a planner's delta, on the newest plan mostly: each
// endpoint of the vocabulary given (new or replacing the parent's),
// removed, or left alone; now and then a name both given and removed, a
// given endpoint that is invalid, or nothing at all.
func (m *model) drawDelta(t *rapid.T) *statev1.SubmitPlan {
	d := &pb.PlanDelta{}
	for _, name := range rapid.Permutation(propEndpoints).Draw(t, "delta_endpoints") {
		if rapid.IntRange(0, 9).Draw(t, "upper") == 0 {
			name = strings.ToUpper(name)
		}
		switch rapid.IntRange(0, 3).Draw(t, "delta_op") {
		case 1, 2:
			d.Endpoints = append(d.Endpoints, drawEndpoint(t, name))
		case 3:
			d.Remove = append(d.Remove, name)
		}
	}
	switch rapid.IntRange(0, 9).Draw(t, "delta_corrupt") {
	case 0:
		if len(d.Endpoints) > 0 {
			d.Remove = append(d.Remove, strings.ToUpper(d.Endpoints[0].Name))
		}
	case 1:
		if len(d.Endpoints) > 0 {
			d.Endpoints[0].Ttl = 0
		}
	case 2:
		d.Remove = append(d.Remove, rapid.SampledFrom(propBadNames).Draw(t, "bad_remove"))
	case 3:
		d.Remove = append(d.Remove, "unknown.dnsplan.test.")
	}
	parent := proto.Uint64(m.nextGen - 1)
	if rapid.IntRange(0, 7).Draw(t, "delta_parent") == 0 {
		parent = proto.Uint64(uint64(rapid.IntRange(0, int(m.nextGen)+1).Draw(t, "other_parent")))
	}
	return &statev1.SubmitPlan{
		Plan:           &pb.Plan{PlannerId: rapid.SampledFrom([]string{"planner-1", "planner-2"}).Draw(t, "planner")},
		Delta:          d,
		Force:          rapid.IntRange(0, 3).Draw(t, "force") == 0,
		ExpectedParent: parent,
	}
}

// drawDoubt is an enactor's report: under a lease as drawFence draws
// one, naming members and strangers, some twice.
func (m *model) drawDoubt(t *rapid.T) *pb.ReportDoubtRequest {
	name, holder, token := m.drawFence(t)
	r := &pb.ReportDoubtRequest{Kind: pb.DoubtKind_DOUBT_KIND_READ_BACK, Generation: uint64(rapid.IntRange(1, 3).Draw(t, "doubt_gen")),
		LeaseName: name, LeaseToken: token, EnactorId: holder, Detail: "seen"}
	if rapid.IntRange(0, 3).Draw(t, "doubt_kind") == 0 {
		r.Kind = pb.DoubtKind_DOUBT_KIND_ROLLOUT
	}
	for range rapid.IntRange(0, 4).Draw(t, "doubt_nodes") {
		r.Nodes = append(r.Nodes, rapid.SampledFrom([]string{"n1", "n2", "n3"}).Draw(t, "doubt_node"))
	}
	return r
}

// predictDoubt is the report rule restated: fenced as an apply; a
// rollout report freezes; a read-back one when the distinct members it
// names are more than the limit's share of the members.
func (m *model) predictDoubt(r *pb.ReportDoubtRequest) (expect, func()) {
	if r.LeaseName == "" || r.EnactorId == "" || r.LeaseToken == 0 || (r.Kind == pb.DoubtKind_DOUBT_KIND_READ_BACK && len(r.Nodes) == 0) {
		return expect{err: ErrInvalid}, nil
	}
	if !m.holds(r.LeaseName, r.EnactorId, r.LeaseToken) {
		return expect{err: ErrFenced}, nil
	}
	freezes := r.Kind == pb.DoubtKind_DOUBT_KIND_ROLLOUT
	if !freezes && m.readBackLimit != nil && *m.readBackLimit < 1 && len(m.members) > 0 {
		named := map[string]bool{}
		for _, id := range r.Nodes {
			if m.members[id] != nil {
				named[id] = true
			}
		}
		freezes = float64(len(named)) > *m.readBackLimit*float64(len(m.members))
	}
	if !freezes {
		return expect{frozen: m.frozen}, nil
	}
	return expect{frozen: true}, func() { m.frozen = true }
}

// drawConfig founds the cluster (sometimes twice, which changes nothing)
// or changes its velocity settings, now and then to invalid values.
func (m *model) drawConfig(t *rapid.T) proto.Message {
	drop := rapid.SampledFrom(propMaxDrops).Draw(t, "max_drop")
	window := durationpb.New(rapid.SampledFrom(propWindows).Draw(t, "window"))
	switch rapid.IntRange(0, 9).Draw(t, "config_kind") {
	case 0, 1:
		c := &pb.ClusterConfig{Design: pb.Design_DESIGN_FIXED, MaxCapacityDrop: drop, VelocityWindow: window}
		if f := rapid.SampledFrom([]float64{0, 0.5, 0.75, 1}).Draw(t, "max_read_back_failures"); f > 0 {
			c.MaxReadBackFailures = proto.Float64(f)
		}
		if n := rapid.SampledFrom([]uint32{0, 2, 3, 5}).Draw(t, "max_velocity_refusals"); n > 0 {
			c.MaxVelocityRefusals = proto.Uint32(n)
		}
		return c
	case 2:
		return &pb.SetConfigRequest{MaxCapacityDrop: proto.Float64(rapid.SampledFrom([]float64{-0.1, 1.5}).Draw(t, "bad_drop"))}
	case 3:
		return &pb.SetConfigRequest{VelocityWindow: durationpb.New(rapid.SampledFrom([]time.Duration{0, -time.Second, 25 * time.Hour}).Draw(t, "bad_window"))}
	case 4:
		return &pb.SetConfigRequest{MaxCapacityDrop: &drop}
	case 5:
		return &pb.SetConfigRequest{VelocityWindow: window}
	}
	return &pb.SetConfigRequest{MaxCapacityDrop: &drop, VelocityWindow: window}
}

func (m *model) drawAcquire(t *rapid.T) *pb.AcquireLeaseRequest {
	r := &pb.AcquireLeaseRequest{
		Name:   rapid.SampledFrom(propLeases).Draw(t, "lease"),
		Holder: rapid.SampledFrom(propEnactors).Draw(t, "holder"),
	}
	switch rapid.IntRange(0, 9).Draw(t, "ttl_kind") {
	case 6:
		r.Ttl = durationpb.New(rapid.SampledFrom(propBadTTLs).Draw(t, "bad_ttl"))
	case 7:
		// no TTL at all
	default:
		r.Ttl = durationpb.New(rapid.SampledFrom(propTTLs).Draw(t, "lease_ttl"))
	}
	return r
}

// drawFence picks a lease, a holder and a token for a renew, release or
// apply: mostly the model's current holder and token, often a superseded
// or made-up token or another enactor.
func (m *model) drawFence(t *rapid.T) (name, holder string, token uint64) {
	name = rapid.SampledFrom(propLeases).Draw(t, "lease")
	var live []string
	for _, n := range propLeases {
		if l := m.leases[n]; l != nil && m.now.Before(l.expires) {
			live = append(live, n)
		}
	}
	if len(live) > 0 && rapid.IntRange(0, 2).Draw(t, "prefer_live") > 0 {
		name = rapid.SampledFrom(live).Draw(t, "live_lease")
	}
	cur := m.leases[name]
	holder = rapid.SampledFrom(propEnactors).Draw(t, "holder")
	if cur != nil && rapid.IntRange(0, 3).Draw(t, "right_holder") > 0 {
		holder = cur.holder
	}
	retired := slices.Sorted(maps.Keys(m.retired))
	switch k := rapid.IntRange(0, 9).Draw(t, "token_kind"); {
	case k == 9:
		token = 0
	case k < 5 && cur != nil:
		token = cur.token
	case k < 7 && len(retired) > 0:
		token = rapid.SampledFrom(retired).Draw(t, "retired_token")
	case k < 8 && len(m.granted) > 0:
		token = rapid.SampledFrom(m.granted).Draw(t, "granted_token")
	default:
		token = uint64(rapid.IntRange(1, int(m.index)+2).Draw(t, "any_token"))
	}
	return name, holder, token
}

func (m *model) drawApply(t *rapid.T) *pb.ApplyPlanRequest {
	r := &pb.ApplyPlanRequest{}
	r.LeaseName, r.EnactorId, r.LeaseToken = m.drawFence(t)
	switch k := rapid.IntRange(0, 9).Draw(t, "gen_kind"); {
	case k < 4 && m.maxGen > 0:
		r.Generation = m.maxGen
	case k < 8 && m.maxGen > 0:
		r.Generation = uint64(rapid.IntRange(1, int(m.maxGen)).Draw(t, "old_gen"))
	case k == 6:
		r.Generation = 0
	default:
		r.Generation = m.nextGen // not assigned yet
	}
	if rapid.IntRange(0, 2).Draw(t, "subset") == 0 {
		n := rapid.IntRange(1, 3).Draw(t, "n_requested")
		for i := 0; i < n; i++ {
			r.Endpoints = append(r.Endpoints, rapid.SampledFrom(propRequestNames).Draw(t, "requested"))
		}
		if rapid.IntRange(0, 9).Draw(t, "bad_request_name") == 5 {
			r.Endpoints = append(r.Endpoints, rapid.SampledFrom(propBadNames).Draw(t, "bad_name"))
		}
	}
	return r
}

// expect is the model's prediction of a command's result.
type expect struct {
	err       error // a sentinel, or nil for accepted
	gen       uint64
	lease     *modelLease
	endpoints []*pb.EndpointResult
	deleted   []uint64
	frozen    bool
}

// advance moves the model's log index and clock for the next command and
// predicts its result. The returned effect, if any, updates the model to
// after the command; it runs after the invariant checks, which judge a
// command against the model as it was when the command arrived.
func (m *model) advance(c Command) (expect, func()) {
	m.index++
	// Time: the first stamp whole, then forward only, by MaxTimeStep at most.
	switch {
	case m.now.IsZero():
		m.now = c.Stamp
	case c.Stamp.After(m.now.Add(MaxTimeStep)):
		m.now = m.now.Add(MaxTimeStep)
	case c.Stamp.After(m.now):
		m.now = c.Stamp
	}
	switch p := c.Payload.(type) {
	case *statev1.SubmitPlan:
		return m.predictSubmit(p)
	case *pb.AcquireLeaseRequest:
		return m.predictAcquire(p)
	case *pb.RenewLeaseRequest:
		cur := m.leases[p.Name]
		if !m.holds(p.Name, p.Holder, p.Token) {
			return expect{err: ErrFenced}, nil
		}
		l := &modelLease{holder: cur.holder, token: cur.token, expires: m.now.Add(cur.ttl), ttl: cur.ttl}
		return expect{lease: l}, func() { m.leases[p.Name] = l }
	case *pb.ReleaseLeaseRequest:
		cur := m.leases[p.Name]
		switch {
		case cur == nil:
			return expect{}, nil
		case cur.token != p.Token || cur.holder != p.Holder:
			return expect{err: ErrFenced}, nil
		}
		return expect{}, func() {
			m.retired[cur.token] = true
			delete(m.leases, p.Name)
		}
	case *pb.ApplyPlanRequest:
		return m.predictApply(p)
	case *pb.ReportDoubtRequest:
		return m.predictDoubt(p)
	case *pb.CleanupPlansRequest:
		if p.KeepLast == 0 {
			return expect{err: ErrInvalid}, nil
		}
		if m.frozen {
			return expect{err: ErrFrozen}, nil
		}
		gens := slices.Sorted(maps.Keys(m.plans))
		keepFrom := max(0, len(gens)-int(p.KeepLast))
		live := map[uint64]bool{}
		for _, a := range m.applied {
			live[a.gen] = true
		}
		var deleted []uint64
		for _, g := range gens[:keepFrom] {
			if !live[g] {
				deleted = append(deleted, g)
			}
		}
		return expect{deleted: deleted}, func() {
			for _, g := range deleted {
				delete(m.plans, g)
			}
		}
	case *pb.SetFreezeRequest:
		return expect{frozen: p.Frozen}, func() { m.frozen = p.Frozen }
	case *statev1.SetMember:
		return expect{}, func() { m.members[p.Id] = p }
	case *statev1.RemoveMember:
		return expect{}, func() { delete(m.members, p.Id) }
	case *pb.ClusterConfig:
		if m.founded {
			return expect{}, nil
		}
		return expect{}, func() {
			m.founded, m.readBackLimit, m.refusalLimit = true, p.MaxReadBackFailures, int(p.GetMaxVelocityRefusals())
			m.setPolicy(p.MaxCapacityDrop, p.VelocityWindow.AsDuration())
		}
	case *pb.SetConfigRequest:
		d, w := m.maxDrop, m.window
		if p.MaxCapacityDrop != nil {
			d = p.GetMaxCapacityDrop()
		}
		if p.VelocityWindow != nil {
			w = p.VelocityWindow.AsDuration()
		}
		switch {
		case d < 0 || d > 1 || w <= 0 || w > 24*time.Hour:
			return expect{err: ErrInvalid}, nil
		case !m.founded:
			return expect{err: ErrNotFounded}, nil
		}
		return expect{}, func() { m.setPolicy(d, w) }
	}
	panic(fmt.Sprintf("model: no rule for %T", c.Payload))
}

func (m *model) setPolicy(drop float64, window time.Duration) {
	cut := m.now.Add(-m.window)
	if cut.After(m.keptSince) {
		m.keptSince = cut
	}
	for name, old := range m.served {
		var recs []modelRecord
		for i, r := range old {
			if i+1 < len(old) && !old[i+1].at.After(cut) {
				continue
			}
			recs = append(recs, r)
		}
		m.served[name] = recs
	}
	for name, old := range m.refusals {
		m.refusals[name] = slices.DeleteFunc(slices.Clone(old), func(r modelRefusal) bool { return !r.at.After(cut) })
	}
	m.maxDrop, m.window = drop, window
}

// endpointRule is the model's per-endpoint rule for a change that is not
// forced: per-family I2, then velocity against the kept window.
func (m *model) endpointRule(name string, targets []*pb.Target) error {
	cur, ok := m.applied[name]
	if !ok {
		return nil
	}
	v4, v6 := modelFamilies(cur.targets)
	n4, n6 := modelFamilies(targets)
	if (v4 && !n4) || (v6 && !n6) {
		return ErrFamily
	}
	next := modelWeights(targets)
	recs := m.served[name]
	cut := m.now.Add(-m.window)
	var inWindow []modelRecord
	for i, r := range recs {
		if i+1 < len(recs) && !recs[i+1].at.After(cut) {
			continue
		}
		inWindow = append(inWindow, r)
	}
	for _, r := range highestRecords(inWindow) {
		if !(modelDrop(r.w, next) <= m.maxDrop) {
			return ErrVelocity
		}
	}
	return nil
}

// capacity is a record's capacity: the sum of its weights.
func capacity(w map[string]uint64) (c uint64) {
	for _, x := range w {
		c += x
	}
	return c
}

// highestRecords returns the records of the largest capacity: what I7
// judges a change against.
func highestRecords(recs []modelRecord) []modelRecord {
	var highest uint64
	for _, r := range recs {
		highest = max(highest, capacity(r.w))
	}
	var out []modelRecord
	for _, r := range recs {
		if capacity(r.w) == highest {
			out = append(out, r)
		}
	}
	return out
}

// recordServed is the window's upkeep as the rules define it.
func (m *model) recordServed(name string, targets []*pb.Target) {
	w := modelWeights(targets)
	cut := m.now.Add(-m.window)
	var recs []modelRecord
	old := m.served[name]
	for i, r := range old {
		if i+1 < len(old) && !old[i+1].at.After(cut) {
			continue
		}
		recs = append(recs, r)
	}
	if len(recs) == 0 || !maps.Equal(recs[len(recs)-1].w, w) {
		recs = append(recs, modelRecord{at: m.now, w: w})
	}
	for len(recs) > MaxServedRecords {
		var highest uint64
		for _, r := range recs {
			highest = max(highest, capacity(r.w))
		}
		drop := 0
		for i, r := range recs[:len(recs)-1] {
			if capacity(r.w) < highest {
				drop = i
				break
			}
		}
		recs = slices.Delete(recs, drop, drop+1)
	}
	m.served[name] = recs
	m.servedLog[name] = append(m.servedLog[name], modelRecord{at: m.now, w: w})
}

// holds is the fencing rule as the model sees it: holder owns the lease
// with exactly this token, the token was never retired, and the lease has
// not expired at the model's time.
func (m *model) holds(name, holder string, token uint64) bool {
	cur := m.leases[name]
	return cur != nil && !m.retired[token] && cur.token == token && cur.holder == holder && m.now.Before(cur.expires)
}

// modelValidPlan is the validation rule restricted to the generators'
// vocabulary, where validity of names and addresses is known by list.
func modelValidPlan(p *pb.Plan) bool {
	if p == nil || len(p.Endpoints) == 0 {
		return false
	}
	seen := map[string]bool{}
	for _, ep := range p.Endpoints {
		name := strings.ToLower(ep.Name)
		if !modelGoodName[name] || seen[name] || ep.Ttl < 1 || ep.Ttl > 86400 {
			return false
		}
		seen[name] = true
		if len(ep.Targets) == 0 || len(ep.Targets) > 1000 {
			return false
		}
		ids := map[string]bool{}
		var total uint64
		for _, tg := range ep.Targets {
			if tg.Id == "" || ids[tg.Id] || !modelGoodAddr[tg.Address] {
				return false
			}
			ids[tg.Id] = true
			total += uint64(tg.Weight)
		}
		if total == 0 {
			return false
		}
	}
	return true
}

// modelDelta is the whole plan a delta makes with the model's plan of
// generation parent (nil: none), as docs/DESIGN.md defines it: the
// parent's endpoints in order, each replaced by the delta's of the same
// name or left out if removed, then the delta's new endpoints in its
// order. ok is false for a delta the rules refuse as invalid: empty, a
// name given or removed twice (in any case), an invalid given endpoint or
// removed name, a removal the parent lacks, or an empty result.
func modelDelta(parent *pb.Plan, submitted *pb.Plan, d *pb.PlanDelta) (full *pb.Plan, staticOK, ok bool) {
	if len(submitted.Endpoints) > 0 || len(d.Endpoints)+len(d.Remove) == 0 {
		return nil, false, false
	}
	named := map[string]bool{}
	given := map[string]*pb.EndpointPlan{}
	for _, ep := range d.Endpoints {
		name := strings.ToLower(ep.Name)
		if named[name] || !modelValidPlan(&pb.Plan{Endpoints: []*pb.EndpointPlan{ep}}) {
			return nil, false, false
		}
		named[name] = true
		given[name] = ep
	}
	removed := map[string]bool{}
	for _, r := range d.Remove {
		name := strings.ToLower(r)
		if named[name] || !modelGoodName[name] {
			return nil, false, false
		}
		named[name] = true
		removed[name] = true
	}
	full = &pb.Plan{PlannerId: submitted.PlannerId, CreatedAt: submitted.CreatedAt}
	inParent := map[string]bool{}
	for _, ep := range parent.GetEndpoints() {
		inParent[ep.Name] = true
		switch {
		case removed[ep.Name]:
		case given[ep.Name] != nil:
			full.Endpoints = append(full.Endpoints, given[ep.Name])
		default:
			full.Endpoints = append(full.Endpoints, ep)
		}
	}
	for name := range removed {
		if !inParent[name] {
			return nil, true, false
		}
	}
	for _, ep := range d.Endpoints {
		if !inParent[strings.ToLower(ep.Name)] {
			full.Endpoints = append(full.Endpoints, ep)
		}
	}
	return full, true, modelValidPlan(full)
}

func (m *model) predictSubmit(c *statev1.SubmitPlan) (expect, func()) {
	plan := c.Plan
	if c.Delta != nil {
		if c.ExpectedParent == nil {
			return expect{err: ErrInvalid}, nil
		}
		// The parent is the newest plan, always stored: clean-up keeps
		// the newest one at least.
		full, staticOK, ok := modelDelta(m.plans[*c.ExpectedParent], c.Plan, c.Delta)
		switch {
		case !staticOK:
			return expect{err: ErrInvalid}, nil
		case *c.ExpectedParent != m.nextGen-1:
			return expect{err: ErrParentMoved}, nil
		case !ok:
			return expect{err: ErrInvalid}, nil
		}
		plan = full
	} else if !modelValidPlan(plan) {
		return expect{err: ErrInvalid}, nil
	} else if c.ExpectedParent != nil && *c.ExpectedParent != m.nextGen-1 {
		return expect{err: ErrParentMoved}, nil
	}
	stored := proto.Clone(plan).(*pb.Plan)
	stored.Forced = c.Force
	stored.Digest = contract.PlanDigest(plan) // as the contract defines it
	for _, ep := range stored.Endpoints {
		ep.Name = strings.ToLower(ep.Name)
		if c.Force {
			continue
		}
		if err := m.endpointRule(ep.Name, ep.Targets); err != nil {
			if !errors.Is(err, ErrVelocity) {
				return expect{err: err}, nil
			}
			// The refusal counts towards the freeze on doubt.
			name, targets := ep.Name, ep.Targets
			return expect{err: err}, func() { m.noteRefusal(name, targets) }
		}
	}
	gen := m.nextGen
	stored.Generation = gen
	if stored.CreatedAt == nil {
		stored.CreatedAt = timestamppb.New(m.now)
	}
	return expect{gen: gen}, func() {
		m.nextGen++
		m.maxGen = gen
		m.everGen[gen] = true
		m.plans[gen] = stored
	}
}

func (m *model) predictAcquire(r *pb.AcquireLeaseRequest) (expect, func()) {
	ttl := r.Ttl.AsDuration()
	if ttl < 50*time.Millisecond || ttl > time.Hour {
		return expect{err: ErrInvalid}, nil
	}
	cur := m.leases[r.Name]
	if cur != nil && m.now.Before(cur.expires) && cur.holder != r.Holder {
		return expect{err: ErrLeaseHeld}, nil
	}
	l := &modelLease{holder: r.Holder, token: m.index, expires: m.now.Add(ttl), ttl: ttl}
	return expect{lease: l}, func() {
		if cur != nil {
			m.retired[cur.token] = true
		}
		m.leases[r.Name] = l
		m.granted = append(m.granted, l.token)
	}
}

func (m *model) predictApply(r *pb.ApplyPlanRequest) (expect, func()) {
	if r.Generation == 0 || r.LeaseToken == 0 || r.LeaseName == "" || r.EnactorId == "" {
		return expect{err: ErrInvalid}, nil
	}
	for _, e := range r.Endpoints {
		if !modelGoodName[strings.ToLower(e)] {
			return expect{err: ErrInvalid}, nil
		}
	}
	if m.frozen {
		return expect{err: ErrFrozen}, nil
	}
	if !m.holds(r.LeaseName, r.EnactorId, r.LeaseToken) {
		return expect{err: ErrFenced}, nil
	}
	p := m.plans[r.Generation]
	if p == nil {
		return expect{err: ErrNotFound}, nil
	}
	byName := map[string]*pb.EndpointPlan{}
	for _, ep := range p.Endpoints {
		byName[ep.Name] = ep
	}
	eps := p.Endpoints
	if len(r.Endpoints) > 0 {
		eps = nil
		for _, e := range r.Endpoints {
			ep := byName[strings.ToLower(e)]
			if ep == nil {
				return expect{err: ErrNotFound}, nil
			}
			eps = append(eps, ep)
		}
	}
	// The endpoints are judged in order, each against the model as the
	// earlier ones left it (an apply may name an endpoint twice), so the
	// prediction runs on the model itself and is undone afterwards.
	saved, savedServed, savedLog := maps.Clone(m.applied), maps.Clone(m.served), maps.Clone(m.servedLog)
	savedRefusals, savedFrozen := maps.Clone(m.refusals), m.frozen
	var results []*pb.EndpointResult
	froze := false // a refusal here froze the cluster; the others still apply
	for _, ep := range eps {
		cur, ok := m.applied[ep.Name]
		switch {
		case ok && cur.gen == r.Generation && cur.token == r.LeaseToken && cur.enactor == r.EnactorId:
			results = append(results, &pb.EndpointResult{Endpoint: ep.Name, Outcome: pb.Outcome_OUTCOME_APPLIED, AppliedGeneration: cur.gen})
			continue
		case ok && cur.gen >= r.Generation:
			results = append(results, &pb.EndpointResult{Endpoint: ep.Name, Outcome: pb.Outcome_OUTCOME_STALE, AppliedGeneration: cur.gen})
			continue
		}
		if !p.Forced {
			if err := m.endpointRule(ep.Name, ep.Targets); err != nil {
				res := &pb.EndpointResult{Endpoint: ep.Name, Outcome: pb.Outcome_OUTCOME_REFUSED, Reason: string(Reason(err))}
				if ok {
					res.AppliedGeneration = cur.gen
				}
				if errors.Is(err, ErrVelocity) && m.noteRefusal(ep.Name, ep.Targets) {
					froze = true
				}
				results = append(results, res)
				continue
			}
		}
		m.applied[ep.Name] = modelApplied{gen: r.Generation, ttl: ep.Ttl, targets: ep.Targets, enactor: r.EnactorId, token: r.LeaseToken}
		m.recordServed(ep.Name, ep.Targets)
		results = append(results, &pb.EndpointResult{Endpoint: ep.Name, Outcome: pb.Outcome_OUTCOME_APPLIED, AppliedGeneration: r.Generation})
	}
	next, nextServed, nextLog := m.applied, m.served, m.servedLog
	nextRefusals, nextFrozen := m.refusals, m.frozen
	m.applied, m.served, m.servedLog = saved, savedServed, savedLog
	m.refusals, m.frozen = savedRefusals, savedFrozen
	return expect{endpoints: results, frozen: froze}, func() {
		m.applied, m.served, m.servedLog = next, nextServed, nextLog
		m.refusals, m.frozen = nextRefusals, nextFrozen
	}
}

// before is what the invariant checks need to know about the state as it
// was before a command.
type before struct {
	applied map[string]uint64
	targets map[string][]*pb.Target
	stored  []uint64
	nextGen uint64
	frozen  bool
	now     time.Time
}

func capture(s *State) before {
	b := before{applied: map[string]uint64{}, targets: map[string][]*pb.Target{}, nextGen: s.NextGeneration(), now: s.Now()}
	for _, a := range s.AppliedAll() {
		b.applied[a.Endpoint] = a.Generation
		b.targets[a.Endpoint] = a.Targets
	}
	for _, p := range s.Plans() {
		b.stored = append(b.stored, p.Generation)
	}
	b.frozen, _ = s.Frozen()
	return b
}

func anyApplied(r Result) bool {
	for _, e := range r.Endpoints {
		if e.Outcome == pb.Outcome_OUTCOME_APPLIED {
			return true
		}
	}
	return false
}

// checkInvariants holds the state after one command to docs/DESIGN.md's
// invariants. m is the model as it was when the command arrived.
func checkInvariants(t *rapid.T, s *State, m *model, pre before, c Command, res Result) {
	// Time: never backwards, as the rule says.
	if s.Now().Before(pre.now) {
		t.Fatalf("TIME: state time ran backwards from %v to %v", pre.now, s.Now())
	}
	if !s.Now().Equal(m.now) {
		t.Fatalf("TIME: state time %v, want %v", s.Now(), m.now)
	}
	if s.LastIndex() != m.index {
		t.Fatalf("TIME: last index %d, want %d", s.LastIndex(), m.index)
	}

	// I1: applied generations never decrease, applied endpoints never vanish.
	for _, name := range slices.Sorted(maps.Keys(pre.applied)) {
		g := pre.applied[name]
		a := s.Applied(name)
		if a == nil {
			t.Fatalf("I1: endpoint %q (generation %d) disappeared", name, g)
		}
		if a.Generation < g {
			t.Fatalf("I1: endpoint %q applied generation went back from %d to %d", name, g, a.Generation)
		}
	}

	// I2: never empty.
	for _, a := range s.AppliedAll() {
		if len(a.Targets) == 0 {
			t.Fatalf("I2: endpoint %q (generation %d) has no targets", a.Endpoint, a.Generation)
		}
		if !slices.ContainsFunc(a.Targets, func(tg *pb.Target) bool { return tg.Weight > 0 }) {
			t.Fatalf("I2: endpoint %q (generation %d) has no target of weight > 0", a.Endpoint, a.Generation)
		}
	}

	// I2 per family, and I7: an endpoint whose record changed by a plan
	// that was not forced still serves every family it served, and keeps
	// at least 1 - max_capacity_drop of the capacity of the highest record
	// it served within the window (judged on the model's full log, back to
	// keptSince).
	for _, a := range s.AppliedAll() {
		g, was := pre.applied[a.Endpoint]
		if !was || g == a.Generation || s.Plan(a.Generation).GetForced() {
			continue
		}
		v4, v6 := modelFamilies(pre.targets[a.Endpoint])
		n4, n6 := modelFamilies(a.Targets)
		if (v4 && !n4) || (v6 && !n6) {
			t.Fatalf("I2: endpoint %q lost an address family from generation %d to %d without force (v4 %v->%v, v6 %v->%v)", a.Endpoint, g, a.Generation, v4, n4, v6, n6)
		}
		log := m.servedLog[a.Endpoint]
		next := modelWeights(a.Targets)
		cut := m.now.Add(-m.window)
		var inWindow []modelRecord
		for i, r := range log {
			if i+1 < len(log) && (!log[i+1].at.After(cut) || !log[i+1].at.After(m.keptSince)) {
				continue
			}
			inWindow = append(inWindow, r)
		}
		for _, r := range highestRecords(inWindow) {
			if d := modelDrop(r.w, next); !(d <= m.maxDrop) {
				t.Fatalf("I7: endpoint %q generation %d removes %.0f%% of the capacity it served from %v, limit %.0f%% within %s", a.Endpoint, a.Generation, d*100, r.at, m.maxDrop*100, m.window)
			}
		}
	}

	// I3: the applied plan is kept.
	for _, a := range s.AppliedAll() {
		if s.Plan(a.Generation) == nil {
			t.Fatalf("I3: endpoint %q serves generation %d, which is no longer stored", a.Endpoint, a.Generation)
		}
	}

	// I4: fencing.
	switch p := c.Payload.(type) {
	case *pb.ApplyPlanRequest:
		if anyApplied(res) {
			checkFenced(t, m, "apply", p.LeaseName, p.EnactorId, p.LeaseToken)
			for _, e := range res.Endpoints {
				a := s.Applied(e.Endpoint)
				if e.Outcome == pb.Outcome_OUTCOME_APPLIED && (a.LeaseToken != p.LeaseToken || a.EnactorId != p.EnactorId) {
					t.Fatalf("I4: endpoint %q records token %d by %q, apply was token %d by %q", e.Endpoint, a.LeaseToken, a.EnactorId, p.LeaseToken, p.EnactorId)
				}
			}
		}
	case *pb.RenewLeaseRequest:
		if res.Err == nil {
			checkFenced(t, m, "renew", p.Name, p.Holder, p.Token)
		}
	case *pb.ReportDoubtRequest:
		if res.Err == nil {
			checkFenced(t, m, "report of doubt", p.LeaseName, p.EnactorId, p.LeaseToken)
		}
	}

	// I6: stored plans are valid; generations strictly increase and are never reused.
	if s.NextGeneration() < pre.nextGen {
		t.Fatalf("I6: next generation went back from %d to %d", pre.nextGen, s.NextGeneration())
	}
	if _, ok := c.Payload.(*statev1.SubmitPlan); ok && res.Err == nil {
		switch {
		case m.everGen[res.Generation]:
			t.Fatalf("I6: generation %d assigned twice", res.Generation)
		case res.Generation <= m.maxGen:
			t.Fatalf("I6: generation %d assigned after %d", res.Generation, m.maxGen)
		case s.Plan(res.Generation) == nil:
			t.Fatalf("I6: accepted generation %d is not stored", res.Generation)
		}
	}
	var prev uint64
	for _, p := range s.Plans() {
		if err := contract.ValidatePlan(p); err != nil {
			t.Fatalf("I6: stored generation %d fails validation: %v", p.Generation, err)
		}
		if p.Generation <= prev || p.Generation >= s.NextGeneration() {
			t.Fatalf("I6: stored generation %d out of order (previous %d, next %d)", p.Generation, prev, s.NextGeneration())
		}
		if !m.everGen[p.Generation] && p.Generation != res.Generation {
			t.Fatalf("I6: stored generation %d was never assigned", p.Generation)
		}
		prev = p.Generation
	}

	// Freeze: no apply, no deletion.
	if pre.frozen && anyApplied(res) {
		t.Fatalf("FREEZE: apply accepted while frozen: %v", res.Endpoints)
	}
	if pre.frozen && len(res.Deleted) > 0 {
		t.Fatalf("FREEZE: clean-up deleted %v while frozen", res.Deleted)
	}

	// Clean-up never deletes the newest keep_last nor an applied plan; no
	// other command deletes plans at all.
	cl, isCleanup := c.Payload.(*pb.CleanupPlansRequest)
	if !isCleanup && len(res.Deleted) > 0 {
		t.Fatalf("CLEANUP: %s deleted %v", c.Type(), res.Deleted)
	}
	if isCleanup {
		newest := pre.stored[max(0, len(pre.stored)-int(cl.KeepLast)):]
		for _, d := range res.Deleted {
			switch {
			case !slices.Contains(pre.stored, d):
				t.Fatalf("CLEANUP: deleted generation %d that was not stored", d)
			case slices.Contains(newest, d):
				t.Fatalf("CLEANUP: deleted generation %d, one of the newest %d %v", d, cl.KeepLast, newest)
			case slices.Contains(slices.Collect(maps.Values(pre.applied)), d):
				t.Fatalf("CLEANUP: deleted generation %d, which is applied", d)
			case s.Plan(d) != nil:
				t.Fatalf("CLEANUP: reported generation %d deleted but it is still stored", d)
			}
		}
	}
	for _, g := range pre.stored {
		if s.Plan(g) == nil && !slices.Contains(res.Deleted, g) {
			t.Fatalf("CLEANUP: generation %d vanished without being reported deleted", g)
		}
	}

	if n := len(s.History(0)); n > HistoryLimit {
		t.Fatalf("MODEL: history holds %d events, limit %d", n, HistoryLimit)
	}
	checkTyped(t, s, c)
}

// checkTyped: the events the step recorded are typed. Each has a kind
// and an outcome code whose names are its words, its kind is the
// command's (or the state machine's own clean-up of plans), and exactly
// the rejected and refused ones carry a contract reason.
func checkTyped(t *rapid.T, s *State, c Command) {
	ev := s.History(0)
	for i := len(ev) - 1; i >= 0 && ev[i].GetIndex() == s.LastIndex(); i-- {
		e := ev[i]
		if e.GetKindCode() == 0 || e.GetOutcomeCode() == 0 {
			t.Fatalf("HISTORY: untyped event %v", e)
		}
		if e.GetKind() != contract.KindName(e.GetKindCode()) || e.GetOutcome() != contract.OutcomeName(e.GetOutcomeCode()) {
			t.Fatalf("HISTORY: words %q/%q disagree with codes %v/%v", e.GetKind(), e.GetOutcome(), e.GetKindCode(), e.GetOutcomeCode())
		}
		// Besides the command's own kind: the state machine's clean-up of
		// plans, and its freeze on doubt (by "cluster", on a refusal).
		_, submit := c.Payload.(*statev1.SubmitPlan)
		_, apply := c.Payload.(*pb.ApplyPlanRequest)
		doubt := (submit || apply) && e.GetKindCode() == kindFreeze && e.GetActor() == "cluster" && strings.HasPrefix(e.GetReason(), "doubt: ")
		if want := lookup(c.Payload).kind; e.GetKindCode() != want && e.GetKindCode() != kindCleanup && !doubt {
			t.Fatalf("HISTORY: %s recorded an event of kind %v, want %v", c.Type(), e.GetKindCode(), want)
		}
		refusal := e.GetOutcomeCode() == outcomeRejected || e.GetOutcomeCode() == outcomeRefused
		r := contract.Reason(e.GetReasonCode())
		if refusal != (r != "") || (r != "" && r.Code() == codes.Internal) {
			t.Fatalf("HISTORY: %v event with reason code %q", e.GetOutcomeCode(), r)
		}
	}
}

// checkFenced is I4 for one accepted apply or renew: the model, as it was
// when the command arrived, must say the caller held the lease with that
// very token, unexpired, and that the token was never superseded.
func checkFenced(t *rapid.T, m *model, what, name, holder string, token uint64) {
	cur := m.leases[name]
	switch {
	case m.retired[token]:
		t.Fatalf("I4: %s accepted superseded token %d on lease %q by %q", what, token, name, holder)
	case cur == nil:
		t.Fatalf("I4: %s accepted token %d on lease %q, which is not held", what, token, name)
	case cur.token != token:
		t.Fatalf("I4: %s accepted token %d on lease %q, whose current token is %d", what, token, name, cur.token)
	case cur.holder != holder:
		t.Fatalf("I4: %s by %q accepted on lease %q held by %q", what, holder, name, cur.holder)
	case !m.now.Before(cur.expires):
		t.Fatalf("I4: %s accepted on lease %q that expired at %v (now %v)", what, name, cur.expires, m.now)
	}
}

// checkResult compares a command's result with the model's prediction.
func checkResult(t *rapid.T, c Command, res Result, want expect) {
	if want.err == nil && res.Err != nil {
		t.Fatalf("MODEL: %s refused (%v), model accepts", c.Type(), res.Err)
	}
	if want.err != nil {
		if !errors.Is(res.Err, want.err) {
			t.Fatalf("MODEL: %s: got error %v, model says %v", c.Type(), res.Err, want.err)
		}
		if res.Generation != 0 || res.Lease != nil || res.Endpoints != nil || res.Deleted != nil {
			t.Fatalf("MODEL: %s refused but returned data: %+v", c.Type(), res)
		}
		return
	}
	if res.Generation != want.gen {
		t.Fatalf("MODEL: %s: generation %d, model says %d", c.Type(), res.Generation, want.gen)
	}
	if (res.Lease == nil) != (want.lease == nil) {
		t.Fatalf("MODEL: %s: lease %v, model says %+v", c.Type(), res.Lease, want.lease)
	}
	if l := res.Lease; l != nil && (l.Holder != want.lease.holder || l.Token != want.lease.token || !l.ExpiresAt.AsTime().Equal(want.lease.expires)) {
		t.Fatalf("MODEL: %s: lease %v, model says %+v", c.Type(), l, want.lease)
	}
	if len(res.Endpoints) != len(want.endpoints) {
		t.Fatalf("MODEL: %s: results %v, model says %v", c.Type(), res.Endpoints, want.endpoints)
	}
	for i := range want.endpoints {
		// The detail is prose for people; the model predicts the rest.
		got := proto.Clone(res.Endpoints[i]).(*pb.EndpointResult)
		if (got.Outcome == pb.Outcome_OUTCOME_REFUSED) != (got.Detail != "") {
			t.Fatalf("MODEL: %s: result %d has outcome %v and detail %q", c.Type(), i, got.Outcome, got.Detail)
		}
		got.Detail = ""
		if !proto.Equal(got, want.endpoints[i]) {
			t.Fatalf("MODEL: %s: result %d is %v, model says %v", c.Type(), i, res.Endpoints[i], want.endpoints[i])
		}
	}
	if !slices.Equal(res.Deleted, want.deleted) {
		t.Fatalf("MODEL: %s: deleted %v, model says %v", c.Type(), res.Deleted, want.deleted)
	}
	if res.Frozen != want.frozen {
		t.Fatalf("MODEL: %s: frozen %v, model says %v", c.Type(), res.Frozen, want.frozen)
	}
}

// checkModelState compares the whole state with the model after a step.
func checkModelState(t *rapid.T, s *State, m *model) {
	if s.NextGeneration() != m.nextGen {
		t.Fatalf("MODEL: next generation %d, model says %d", s.NextGeneration(), m.nextGen)
	}
	if s.NumPlans() != len(m.plans) {
		t.Fatalf("MODEL: %d plans stored, model says %d", s.NumPlans(), len(m.plans))
	}
	for g, want := range m.plans {
		if got := s.Plan(g); !proto.Equal(got, want) {
			t.Fatalf("MODEL: generation %d is %v, model says %v", g, got, want)
		}
	}
	if s.NumApplied() != len(m.applied) {
		t.Fatalf("MODEL: %d endpoints applied, model says %d", s.NumApplied(), len(m.applied))
	}
	for name, want := range m.applied {
		a := s.Applied(name)
		if a == nil || a.Generation != want.gen || a.Ttl != want.ttl || a.EnactorId != want.enactor || a.LeaseToken != want.token ||
			!slices.EqualFunc(a.Targets, want.targets, func(x, y *pb.Target) bool { return proto.Equal(x, y) }) {
			t.Fatalf("MODEL: endpoint %q is %v, model says %+v", name, a, want)
		}
	}
	leases := s.Leases()
	if len(leases) != len(m.leases) {
		t.Fatalf("MODEL: leases %v, model has %d", leases, len(m.leases))
	}
	for _, l := range leases {
		want := m.leases[l.Name]
		if want == nil || l.Holder != want.holder || l.Token != want.token || !l.ExpiresAt.AsTime().Equal(want.expires) {
			t.Fatalf("MODEL: lease %v, model says %+v", l, want)
		}
	}
	if frozen, _ := s.Frozen(); frozen != m.frozen {
		t.Fatalf("MODEL: frozen %v, model says %v", frozen, m.frozen)
	}
	members := s.Members()
	if len(members) != len(m.members) {
		t.Fatalf("MODEL: members %v, model has %d", members, len(m.members))
	}
	for _, mb := range members {
		want := m.members[mb.ID]
		if want == nil || mb.RaftAddr != want.RaftAddr || mb.GRPCAddr != want.GrpcAddr {
			t.Fatalf("MODEL: member %+v, model says %v", mb, want)
		}
	}
}

// roundTrip checks that Restore(Marshal(s)) marshals to the same bytes and
// returns the restored state.
func roundTrip(t *rapid.T, s *State) *State {
	b1, err := s.Marshal()
	if err != nil {
		t.Fatalf("RESTORE: marshal: %v", err)
	}
	r, err := Restore(b1)
	if err != nil {
		t.Fatalf("RESTORE: restore: %v", err)
	}
	b2, err := r.Marshal()
	if err != nil {
		t.Fatalf("RESTORE: marshal restored: %v", err)
	}
	if !bytes.Equal(b1, b2) {
		t.Fatalf("RESTORE: Marshal(Restore(Marshal(s))) differs from Marshal(s): %d vs %d bytes", len(b2), len(b1))
	}
	return r
}

// describe formats a command for rapid's failure log, lazily.
type describe Command

func (d describe) String() string {
	return fmt.Sprintf("%s @%s {%v}", Command(d).Type(), d.Stamp.Sub(t0), d.Payload)
}

// runSteps is one rapid test case: a random command sequence applied to a
// fresh state, every invariant checked after every step. With exact set,
// every result and the whole state are also compared with the model.
func runSteps(t *rapid.T, exact bool) {
	s := newActive()
	m := newModel()
	n := rapid.IntRange(1, 200).Draw(t, "steps")
	for i := 0; i < n; i++ {
		c := m.draw(t)
		pre := capture(s)
		want, effect := m.advance(c)
		res := s.Apply(m.index, c)
		tally(c, res)
		t.Logf("#%d %v -> err=%v gen=%d lease=%v endpoints=%v deleted=%v", m.index, describe(c), res.Err, res.Generation, res.Lease, res.Endpoints, res.Deleted)
		checkInvariants(t, s, m, pre, c, res)
		if exact {
			checkResult(t, c, res, want)
		}
		if effect != nil {
			effect()
		}
		if exact {
			checkModelState(t, s, m)
		}
		if i%10 == 9 || i == n-1 {
			r := roundTrip(t, s)
			// Carry on from the restored state now and then: it must
			// behave exactly like the original.
			if rapid.Bool().Draw(t, "continue_restored") {
				s = r
			}
		}
	}
}

// TestPropertyInvariants holds random command sequences to the safety
// invariants I1-I4, I6, freeze and clean-up rules.
func TestPropertyInvariants(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) { runSteps(t, false) })
}

// TestPropertyModel additionally requires every result and the whole
// state to match the model exactly.
func TestPropertyModel(t *testing.T) {
	outcomes = map[string]int{}
	rapid.Check(t, func(t *rapid.T) { runSteps(t, true) })
	t.Logf("outcomes over every step: %v", outcomes)
	outcomes = nil
}

// outcomes counts what the steps did, so a run shows that the generators
// reach every rule and not only the easy refusals.
var outcomes map[string]int

func tally(c Command, res Result) {
	if outcomes == nil {
		return
	}
	kind := c.Type().String()
	if sp, ok := c.Payload.(*statev1.SubmitPlan); ok && sp.Delta != nil {
		kind = "submit_delta"
	}
	key := kind + ":" + string(Reason(res.Err))
	if res.Err == nil {
		key = kind + ":ok"
	}
	outcomes[key]++
	for _, e := range res.Endpoints {
		outcomes["endpoint:"+e.Outcome.String()]++
	}
	if len(res.Deleted) > 0 {
		outcomes["cleanup:deleted_some"]++
	}
	if res.Doubt != "" {
		outcomes[kind+":froze_on_doubt"]++
	}
}

// TestPropertyDeterminism applies one random command sequence to fresh
// states by different routes: directly; through Encode/Decode of every
// command with a Marshal/Restore midway; and on a Clone taken midway. All
// must give the same results and the same Marshal bytes, and a Clone left
// alone midway must not see later commands.
func TestPropertyDeterminism(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := newModel()
		n := rapid.IntRange(1, 150).Draw(t, "steps")
		cmds := make([]Command, n)
		for i := range cmds {
			cmds[i] = m.draw(t)
			if _, effect := m.advance(cmds[i]); effect != nil {
				effect()
			}
		}
		mid := rapid.IntRange(0, n).Draw(t, "mid")

		direct, decoded := newActive(), newActive()
		var cloned, view *State
		var viewBytes []byte
		for i, c := range cmds {
			if i == mid {
				b, err := decoded.Marshal()
				if err != nil {
					t.Fatalf("marshal: %v", err)
				}
				if decoded, err = Restore(b); err != nil {
					t.Fatalf("restore: %v", err)
				}
				cloned, view = direct.Clone(), direct.Clone()
				if viewBytes, err = view.Marshal(); err != nil {
					t.Fatalf("marshal: %v", err)
				}
			}
			index := uint64(i + 1)
			enc, err := c.Encode()
			if err != nil {
				t.Fatalf("encode %v: %v", describe(c), err)
			}
			dc, err := Decode(enc)
			if err != nil {
				t.Fatalf("decode %v: %v", describe(c), err)
			}
			if dc.Type() != c.Type() || !dc.Stamp.Equal(c.Stamp) || !proto.Equal(dc.Payload, c.Payload) {
				t.Fatalf("decode(encode(%v)) = %v", describe(c), describe(dc))
			}
			r1 := direct.Apply(index, c)
			r2 := decoded.Apply(index, dc)
			sameResult(t, index, r1, r2)
			if cloned != nil {
				sameResult(t, index, r1, cloned.Apply(index, c))
			}
		}
		want := marshalRapid(t, direct)
		if got := marshalRapid(t, decoded); !bytes.Equal(got, want) {
			t.Fatalf("DETERMINISM: decoded+restored state differs from direct state")
		}
		if cloned != nil {
			if got := marshalRapid(t, cloned); !bytes.Equal(got, want) {
				t.Fatalf("DETERMINISM: cloned state differs from direct state")
			}
		}
		if view != nil {
			if got := marshalRapid(t, view); !bytes.Equal(got, viewBytes) {
				t.Fatalf("DETERMINISM: a clone changed after later commands were applied to its original")
			}
		}
	})
}

func marshalRapid(t *rapid.T, s *State) []byte {
	b, err := s.Marshal()
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

func sameResult(t *rapid.T, index uint64, a, b Result) {
	errText := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	switch {
	case errText(a.Err) != errText(b.Err),
		a.Generation != b.Generation,
		!proto.Equal(a.Lease, b.Lease),
		!slices.EqualFunc(a.Endpoints, b.Endpoints, func(x, y *pb.EndpointResult) bool { return proto.Equal(x, y) }),
		!slices.Equal(a.Deleted, b.Deleted),
		a.Frozen != b.Frozen:
		t.Fatalf("DETERMINISM: index %d: results differ: %+v vs %+v", index, a, b)
	}
}
