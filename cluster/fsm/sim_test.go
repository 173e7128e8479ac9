package fsm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/contract"
	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// The simulation drives the pure state machine with a planner, several
// enactors and clean-ups under adversarial scheduling: at every step a
// random actor takes its next step, an enactor may stall for many steps in
// the middle of its work (between deciding and writing, the AWS race),
// and time jumps forward by random amounts (leases expire). After every
// step it checks the invariants a reader can see. With the fixed rules it
// must find nothing; with the legacy rules (the old enactor and clean-up)
// it must find the AWS failure.
//
// `make sim` runs it for millions of steps (DNSPLAN_SIM_STEPS per seed).

var simEndpoints = []string{"api.dnsplan.test.", "api-fips.dnsplan.test.", "api-v6.dnsplan.test."}

// simEnactor is one enactor's progress through its work.
type simEnactor struct {
	id      string
	token   uint64   // lease token it believes it holds (0: none)
	gen     uint64   // generation it decided to apply
	pending []string // endpoints still to write (legacy writes one at a time)
	stall   int      // steps it sleeps before its next action
}

type sim struct {
	rng      *rand.Rand
	s        *State
	index    uint64
	now      time.Time
	legacy   bool
	enactors []*simEnactor
	// seen: the highest generation each endpoint has served, and whether
	// it has served addresses (I1, I2 as a reader sees them).
	seen   map[string]uint64
	served map[string]bool
}

func newSim(seed uint64, legacy bool) *sim {
	m := &sim{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), s: newActive(), now: t0, legacy: legacy,
		seen: map[string]uint64{}, served: map[string]bool{}}
	for i := range 3 {
		m.enactors = append(m.enactors, &simEnactor{id: fmt.Sprintf("az-%c", 'a'+i)})
	}
	design := pb.Design_DESIGN_FIXED
	if legacy {
		design = pb.Design_DESIGN_LEGACY
	}
	m.do(&pb.ClusterConfig{Design: design, MaxCapacityDrop: 1, VelocityWindow: durationpb.New(time.Minute)})
	return m
}

func (m *sim) do(p proto.Message) Result {
	m.index++
	return m.s.Apply(m.index, Command{Stamp: m.now, Payload: p})
}

// step runs one scheduling decision and returns a violation, if any.
func (m *sim) step() error {
	m.now = m.now.Add(time.Duration(m.rng.IntN(400)) * time.Millisecond)
	switch r := m.rng.IntN(20); {
	case r < 3:
		if err := m.submit(); err != nil {
			return err
		}
	case r < 4:
		if m.legacy {
			m.do(&pb.LegacyCleanupRequest{KeepGenerations: uint32(1 + m.rng.IntN(4))})
		} else {
			m.do(&pb.CleanupPlansRequest{KeepLast: uint32(1 + m.rng.IntN(4))})
		}
	default:
		e := m.enactors[m.rng.IntN(len(m.enactors))]
		if e.stall > 0 {
			e.stall--
		} else {
			m.act(e)
		}
	}
	return m.check()
}

// submit is the planner's round: a whole plan, or (fixed design, half
// the time) the delta from the newest plan to it, which must store
// exactly that plan.
func (m *sim) submit() error {
	p := &pb.Plan{PlannerId: "planner"}
	for i, name := range simEndpoints {
		if m.rng.IntN(4) == 0 {
			continue
		}
		ep := &pb.EndpointPlan{Name: name, Ttl: 30}
		for j := range 3 {
			addr := fmt.Sprintf("192.0.2.%d", 10*i+j+1)
			if i == 2 {
				addr = fmt.Sprintf("2001:db8::%d", j+1)
			}
			ep.Targets = append(ep.Targets, &pb.Target{Id: fmt.Sprintf("lb-%d", j), Address: addr, Weight: uint32(m.rng.IntN(3))})
		}
		p.Endpoints = append(p.Endpoints, ep)
	}
	parent := m.s.NewestPlan()
	if m.legacy || parent == nil || m.rng.IntN(2) == 0 {
		m.do(&statev1.SubmitPlan{Plan: p, Force: true})
		return nil
	}
	d := simDelta(parent, p)
	if len(d.Endpoints)+len(d.Remove) == 0 {
		return nil // nothing changed: a planner submits nothing
	}
	r := m.do(&statev1.SubmitPlan{Plan: &pb.Plan{PlannerId: p.PlannerId}, Delta: d, ExpectedParent: proto.Uint64(parent.Generation), Force: true})
	// A delta is refused exactly when the whole plan it describes would be.
	if whole := contract.ValidatePlan(p); whole != nil || r.Err != nil {
		if whole != nil && errors.Is(r.Err, ErrInvalid) {
			return nil
		}
		return fmt.Errorf("DELTA: a delta on the newest generation %d: %v; the whole plan: %v", parent.Generation, r.Err, whole)
	}
	got := map[string]*pb.EndpointPlan{}
	for _, ep := range m.s.Plan(r.Generation).GetEndpoints() {
		got[ep.Name] = ep
	}
	for _, ep := range p.Endpoints {
		if !proto.Equal(got[ep.Name], ep) {
			return fmt.Errorf("DELTA: generation %d holds %v for %s, the plan the delta described %v", r.Generation, got[ep.Name], ep.Name, ep)
		}
		delete(got, ep.Name)
	}
	if len(got) > 0 {
		return fmt.Errorf("DELTA: generation %d holds endpoints the plan the delta described does not: %v", r.Generation, got)
	}
	return nil
}

// simDelta is the delta from parent to p: p's endpoints that are new or
// differ, and the parent's that p does not have.
func simDelta(parent, p *pb.Plan) *pb.PlanDelta {
	d := &pb.PlanDelta{}
	in := map[string]bool{}
	for _, ep := range p.Endpoints {
		in[ep.Name] = true
		if i := slices.IndexFunc(parent.Endpoints, func(x *pb.EndpointPlan) bool { return x.Name == ep.Name }); i < 0 || !proto.Equal(parent.Endpoints[i], ep) {
			d.Endpoints = append(d.Endpoints, ep)
		}
	}
	for _, ep := range parent.Endpoints {
		if !in[ep.Name] {
			d.Remove = append(d.Remove, ep.Name)
		}
	}
	return d
}

// act is one enactor's next action. Fixed: acquire, decide on the newest
// plan, (maybe stall), apply with its token. Legacy: decide on the newest
// plan after a one-time check, then write endpoint by endpoint with stalls
// in between, then clean up.
func (m *sim) act(e *simEnactor) {
	if m.rng.IntN(6) == 0 {
		e.stall = m.rng.IntN(60) // a long pause: retries, GC, a frozen container
	}
	if m.legacy {
		m.actLegacy(e)
		return
	}
	if e.token == 0 {
		if r := m.do(&pb.AcquireLeaseRequest{Name: "enactor/0", Holder: e.id, Ttl: durationpb.New(2 * time.Second)}); r.Err == nil {
			e.token = r.Lease.Token
		}
		return
	}
	if e.gen == 0 {
		if p := m.s.NewestPlan(); p != nil {
			e.gen = p.Generation
		}
		if m.rng.IntN(2) == 0 {
			m.do(&pb.RenewLeaseRequest{Name: "enactor/0", Holder: e.id, Token: e.token})
		}
		return
	}
	r := m.do(&pb.ApplyPlanRequest{Generation: e.gen, LeaseName: "enactor/0", LeaseToken: e.token, EnactorId: e.id})
	if r.Err != nil && Reason(r.Err) == contract.ReasonFenced {
		// Lost the lease: acquire again, and then (adversarially) carry on
		// with the plan decided long ago, now with a valid token. Only the
		// state machine's generation check stands between that and a
		// regression.
		e.token = 0
		return
	}
	e.gen = 0
}

func (m *sim) actLegacy(e *simEnactor) {
	if len(e.pending) == 0 {
		p := m.s.NewestPlan()
		if p == nil {
			return
		}
		// The one-time check: newer than what is applied, and every
		// applied plan still readable (the original got stuck otherwise).
		for _, ep := range p.Endpoints {
			if a := m.s.applied[ep.Name]; a != nil && (a.Generation >= p.Generation || m.s.Plan(a.Generation) == nil) {
				return
			}
		}
		e.gen = p.Generation
		for _, ep := range p.Endpoints {
			e.pending = append(e.pending, ep.Name)
		}
		return
	}
	m.do(&pb.LegacyApplyRequest{Generation: e.gen, Endpoint: e.pending[0], EnactorId: e.id})
	e.pending = e.pending[1:]
	if len(e.pending) == 0 {
		m.do(&pb.LegacyCleanupRequest{KeepGenerations: 3})
	}
}

// check holds the state to I1, I2 and I3 as a reader sees them.
func (m *sim) check() error {
	for _, name := range simEndpoints {
		a := m.s.Applied(name)
		if a == nil {
			continue
		}
		if a.Generation < m.seen[name] {
			return fmt.Errorf("I1: %s went back from generation %d to %d", name, m.seen[name], a.Generation)
		}
		m.seen[name] = a.Generation
		weighted := false
		for _, t := range a.Targets {
			weighted = weighted || t.Weight > 0
		}
		if weighted {
			m.served[name] = true
		} else if m.served[name] {
			return fmt.Errorf("I2: %s serves no address (generation %d)", name, a.Generation)
		}
		if m.s.Plan(a.Generation) == nil {
			return fmt.Errorf("I3: %s serves generation %d, which was deleted", name, a.Generation)
		}
	}
	return nil
}

func simSteps(def int) int {
	if v, err := strconv.Atoi(os.Getenv("DNSPLAN_SIM_STEPS")); err == nil && v > 0 {
		return v
	}
	return def
}

func TestSimulationFixedDesign(t *testing.T) {
	steps := simSteps(2000)
	for seed := uint64(1); seed <= 10; seed++ {
		m := newSim(seed, false)
		for i := range steps {
			if err := m.step(); err != nil {
				t.Fatalf("seed %d step %d: %v", seed, i, err)
			}
		}
		if m.s.NumApplied() == 0 {
			t.Fatalf("seed %d: nothing was ever applied; the simulation is not exercising the rules", seed)
		}
	}
}

func TestSimulationCatchesLegacyDesign(t *testing.T) {
	steps := simSteps(2000)
	caught := 0
	for seed := uint64(1); seed <= 10; seed++ {
		m := newSim(seed, true)
		for i := range steps {
			if err := m.step(); err != nil {
				t.Logf("seed %d: legacy caught at step %d: %v", seed, i, err)
				caught++
				break
			}
		}
	}
	if caught < 9 {
		t.Fatalf("the simulation caught the legacy design in %d of 10 seeds, want at least 9", caught)
	}
}
