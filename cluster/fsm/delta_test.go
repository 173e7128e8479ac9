package fsm

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/dnsplan/dnsplan/contract"
	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// A chain of plans submitted as deltas stores, generation by generation,
// the same plans as the chain submitted whole: the full-plan semantics is
// the model. Deltas name their parent; one that names a parent no longer
// newest is refused PARENT_MOVED and stores nothing, as is one removing
// an endpoint its parent does not hold, or leaving no endpoint.
func TestDeltaChainsStoreWholePlans(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		whole, deltas := newHarness(t), newHarness(t)
		var prev *pb.Plan // the newest stored plan, as stored
		for step := range rapid.IntRange(1, 8).Draw(rt, "plans") {
			next := &pb.Plan{PlannerId: "p"}
			for i := range 6 {
				if rapid.IntRange(0, 2).Draw(rt, "holds") == 0 {
					continue
				}
				name := fmt.Sprintf("e%d.dnsplan.test.", i)
				if rapid.Bool().Draw(rt, "upper") {
					name = fmt.Sprintf("E%d.dnsplan.test.", i) // the same name, spelled otherwise
				}
				next.Endpoints = append(next.Endpoints, weighted(name, uint32(rapid.IntRange(1, 3).Draw(rt, "w1")), uint32(rapid.IntRange(0, 3).Draw(rt, "w2"))))
			}
			change := deltaOf(prev, next)
			parent := deltas.s.NewestGeneration()
			switch rapid.IntRange(0, 9).Draw(rt, "fault") {
			case 0:
				if parent > 0 {
					r := deltas.do(&statev1.SubmitPlan{Plan: &pb.Plan{PlannerId: "p"}, Delta: change, Force: true, ExpectedParent: proto.Uint64(parent - 1)})
					if !errors.Is(r.Err, ErrParentMoved) || deltas.s.NewestGeneration() != parent {
						rt.Fatalf("DELTA: a delta on generation %d of %d: %v", parent-1, parent, r.Err)
					}
				}
			case 1:
				if prev != nil {
					gone := &pb.PlanDelta{Endpoints: change.Endpoints, Remove: append(append([]string(nil), change.Remove...), "nowhere.dnsplan.test.")}
					r := deltas.do(&statev1.SubmitPlan{Plan: &pb.Plan{PlannerId: "p"}, Delta: gone, Force: true, ExpectedParent: proto.Uint64(parent)})
					if !errors.Is(r.Err, ErrInvalid) || deltas.s.NewestGeneration() != parent {
						rt.Fatalf("DELTA: removing an endpoint the parent does not hold: %v", r.Err)
					}
				}
			}
			rw := whole.submit(next, true)
			if len(change.Endpoints) == 0 && len(change.Remove) == 0 {
				continue // nothing changes: no delta to send
			}
			rd := deltas.do(&statev1.SubmitPlan{Plan: &pb.Plan{PlannerId: "p"}, Delta: change, Force: true, ExpectedParent: proto.Uint64(parent)})
			if (rw.Err == nil) != (rd.Err == nil) {
				rt.Fatalf("DELTA: step %d: whole %v, delta %v", step, rw.Err, rd.Err)
			}
			if rw.Err != nil {
				if len(next.Endpoints) != 0 || !errors.Is(rd.Err, ErrInvalid) {
					rt.Fatalf("DELTA: step %d refused: whole %v, delta %v", step, rw.Err, rd.Err)
				}
				continue // a plan with no endpoint: refused either way
			}
			pw, pd := whole.s.Plan(rw.Generation), deltas.s.Plan(rd.Generation)
			if pw.GetDigest() != pd.GetDigest() || !sameEndpoints(pw, pd) {
				rt.Fatalf("DELTA: step %d: whole stored %v, delta stored %v", step, pw.GetEndpoints(), pd.GetEndpoints())
			}
			prev = pd
		}
	})
}

// deltaOf is the delta from prev (nil: none) to next: next's endpoints
// that differ from prev's, and prev's names next does not hold.
func deltaOf(prev, next *pb.Plan) *pb.PlanDelta {
	old := map[string]*pb.EndpointPlan{}
	for _, ep := range prev.GetEndpoints() {
		old[ep.GetName()] = ep
	}
	delta := &pb.PlanDelta{}
	held := map[string]bool{}
	for _, ep := range next.GetEndpoints() {
		name := contract.CanonicalName(ep.GetName())
		held[name] = true
		canon := proto.CloneOf(ep)
		canon.Name = name
		if o := old[name]; o == nil || !proto.Equal(o, canon) {
			delta.Endpoints = append(delta.Endpoints, ep)
		}
	}
	for _, ep := range prev.GetEndpoints() {
		if !held[ep.GetName()] {
			delta.Remove = append(delta.Remove, ep.GetName())
		}
	}
	return delta
}

// sameEndpoints reports whether a and b hold the same endpoints, in any
// order.
func sameEndpoints(a, b *pb.Plan) bool {
	if len(a.GetEndpoints()) != len(b.GetEndpoints()) {
		return false
	}
	byName := map[string]*pb.EndpointPlan{}
	for _, ep := range a.GetEndpoints() {
		byName[ep.GetName()] = ep
	}
	for _, ep := range b.GetEndpoints() {
		if !proto.Equal(byName[ep.GetName()], ep) {
			return false
		}
	}
	return true
}
