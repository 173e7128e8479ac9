package planner

import (
	"net/netip"

	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// built is what one inventory and one view of health yield.
type built struct {
	// ready is false while some target has no probe result yet; plan is
	// then nil, since a plan that guessed would be worse than none.
	ready bool
	plan  *pb.Plan
	// failOpen lists the endpoints with an address family whose every
	// target is unhealthy, or that has fewer healthy ones than its share
	// of the endpoint's minimum, and which therefore carry that family's
	// targets at their capacity.
	failOpen map[string]bool
}

// buildPlan is the planner's rule as a pure function of its inputs: a
// target's weight is its capacity while healthy and 0 otherwise, except
// that an address family (IPv4, IPv6) of an endpoint with no healthy
// target fails open, every target of that family at its capacity. Route
// 53 does the same: when every check fails, the checks are more likely
// wrong than every load balancer dead, and an answer with something beats
// one with nothing. Per family, because an endpoint whose IPv4 targets all
// failed would otherwise answer A queries with nothing while AAAA still
// works (I2 per family; the cluster would refuse that plan unforced).
//
// An endpoint with a minimum healthy (Endpoint.MinHealthy, as Envoy's
// panic threshold) fails open the same way, per family, below it: a
// family of n_f of the endpoint's n targets needs ceil(min × n_f / n)
// healthy ones, and fails open with fewer. Each family then serves its
// share or all of its targets, so the endpoint serves at least its
// minimum and the cluster, which holds plans to it, accepts the plan.
//
// The inventory is canonical (sorted), so equal inputs give equal plans.
func buildPlan(plannerID string, inv *Inventory, health func(id string) (healthy, known bool)) built {
	b := built{ready: true, failOpen: map[string]bool{}}
	plan := &pb.Plan{PlannerId: plannerID}
	for _, ep := range inv.Endpoints {
		out := &pb.EndpointPlan{Name: ep.Name, Ttl: ep.TTL, MinHealthyTargets: ep.MinHealthy, MinHealthyFraction: ep.MinHealthyFraction}
		// Per family (0: IPv4, 1: IPv6): targets and healthy ones.
		var targets, healthy [2]int
		for _, t := range ep.Targets {
			ok, known := health(t.ID)
			if !known {
				b.ready = false
			}
			w := uint32(0)
			f := family(t.Address)
			targets[f]++
			if ok {
				w = t.Capacity
				healthy[f]++
			}
			out.Targets = append(out.Targets, &pb.Target{Id: t.ID, Address: t.Address, Weight: w})
		}
		need := contract.MinHealthy(out)
		for i, t := range ep.Targets {
			f := family(t.Address)
			needF := (need*targets[f] + len(ep.Targets) - 1) / len(ep.Targets) // ceil(need × n_f / n)
			if healthy[f] == 0 || healthy[f] < needF {
				out.Targets[i].Weight = t.Capacity
				b.failOpen[ep.Name] = true
			}
		}
		plan.Endpoints = append(plan.Endpoints, out)
	}
	if b.ready {
		b.plan = plan
	} else {
		b.failOpen = map[string]bool{}
	}
	return b
}

// family is 0 for an address that gives A records, 1 for AAAA.
func family(addr string) int {
	if a, err := netip.ParseAddr(addr); err == nil && a.Is4() {
		return 0
	}
	return 1
}

// sameRecords reports whether two plans hold the same records: the same
// endpoints, each with the same TTL and the same targets (id, address,
// weight), in any order. Generation, creation time and planner id are not
// records: a plan another planner stored with equal records needs no
// successor.
func sameRecords(a, b *pb.Plan) bool {
	if len(a.GetEndpoints()) != len(b.GetEndpoints()) {
		return false
	}
	eps := make(map[string]*pb.EndpointPlan, len(a.GetEndpoints()))
	for _, ep := range a.GetEndpoints() {
		eps[contract.CanonicalName(ep.GetName())] = ep
	}
	for _, be := range b.GetEndpoints() {
		ae, ok := eps[contract.CanonicalName(be.GetName())]
		if !ok || ae.GetTtl() != be.GetTtl() || len(ae.GetTargets()) != len(be.GetTargets()) {
			return false
		}
		ts := make(map[string]*pb.Target, len(ae.GetTargets()))
		for _, t := range ae.GetTargets() {
			ts[t.GetId()] = t
		}
		if len(ts) != len(ae.GetTargets()) {
			return false // duplicate ids: not a plan this planner builds
		}
		for _, bt := range be.GetTargets() {
			at, ok := ts[bt.GetId()]
			if !ok || at.GetWeight() != bt.GetWeight() || !sameAddress(at.GetAddress(), bt.GetAddress()) {
				return false
			}
		}
	}
	return true
}

// sameAddress compares addresses as IPs, so "2001:DB8::1" stored by
// someone else equals the planner's canonical "2001:db8::1".
func sameAddress(a, b string) bool {
	if a == b {
		return true
	}
	x, errX := netip.ParseAddr(a)
	y, errY := netip.ParseAddr(b)
	return errX == nil && errY == nil && x == y
}
