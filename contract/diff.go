package contract

import (
	"maps"
	"net/netip"
	"slices"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// The words of EndpointDiff.change.
const (
	ChangeAdded     = "added"
	ChangeRemoved   = "removed"
	ChangeChanged   = "changed"
	ChangeUnchanged = "unchanged"
)

// DiffPlans compares two plans endpoint by endpoint (either may be nil:
// no plan), every endpoint of either, by canonical name. An address is
// served when its targets' weights add up to more than 0; the rules are
// left to the caller, which knows what is served now.
func DiffPlans(from, to *pb.Plan) []*pb.EndpointDiff {
	a, b := endpointsByName(from), endpointsByName(to)
	names := slices.Sorted(maps.Keys(a))
	for n := range b {
		if _, ok := a[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	out := make([]*pb.EndpointDiff, 0, len(names))
	for _, n := range names {
		out = append(out, DiffEndpoint(n, a[n], b[n]))
	}
	return out
}

func endpointsByName(p *pb.Plan) map[string]*pb.EndpointPlan {
	out := make(map[string]*pb.EndpointPlan, len(p.GetEndpoints()))
	for _, ep := range p.GetEndpoints() {
		out[CanonicalName(ep.GetName())] = ep
	}
	return out
}

// DiffEndpoint compares one endpoint's records (nil: it has none). An
// endpoint to does not hold is "removed" with nothing else said: applying
// a plan that does not hold an endpoint leaves what it serves as it is.
func DiffEndpoint(name string, from, to *pb.EndpointPlan) *pb.EndpointDiff {
	d := &pb.EndpointDiff{Endpoint: name}
	if from != nil && to == nil {
		d.Change = ChangeRemoved
		return d
	}
	wa, wb := addressWeights(from.GetTargets()), addressWeights(to.GetTargets())
	for _, addr := range slices.SortedFunc(maps.Keys(wb), compareAddrs) {
		switch was := wa[addr]; {
		case was == 0:
			d.Added = append(d.Added, addr.String())
		case was != wb[addr]:
			d.Weights = append(d.Weights, &pb.WeightChange{Address: addr.String(), From: was, To: wb[addr]})
		}
	}
	for _, addr := range slices.SortedFunc(maps.Keys(wa), compareAddrs) {
		if wb[addr] == 0 {
			d.Removed = append(d.Removed, addr.String())
		}
	}
	d.AChangePercent = familyChange(wa, wb, netip.Addr.Is4)
	d.AaaaChangePercent = familyChange(wa, wb, netip.Addr.Is6)
	if from != nil && to != nil && from.GetTtl() != to.GetTtl() {
		d.TtlFrom, d.TtlTo = from.GetTtl(), to.GetTtl()
	}
	switch {
	case from == nil:
		d.Change = ChangeAdded
	case to == nil:
		d.Change = ChangeRemoved
	case len(d.Added)+len(d.Removed)+len(d.Weights) > 0 || d.TtlFrom != d.TtlTo:
		d.Change = ChangeChanged
	default:
		d.Change = ChangeUnchanged
	}
	return d
}

// BoundDiff keeps at most n entries of each of d's lists (added,
// removed, weights), counting the rest in omitted, so that a change of
// many addresses costs a bounded record.
func BoundDiff(d *pb.EndpointDiff, n int) {
	if len(d.Added) > n {
		d.Omitted += uint32(len(d.Added) - n)
		d.Added = d.Added[:n]
	}
	if len(d.Removed) > n {
		d.Omitted += uint32(len(d.Removed) - n)
		d.Removed = d.Removed[:n]
	}
	if len(d.Weights) > n {
		d.Omitted += uint32(len(d.Weights) - n)
		d.Weights = d.Weights[:n]
	}
}

// addressWeights sums the weights per served address (weight > 0).
func addressWeights(ts []*pb.Target) map[netip.Addr]uint64 {
	out := map[netip.Addr]uint64{}
	for _, t := range ts {
		a, err := netip.ParseAddr(t.GetAddress())
		if err != nil || t.GetWeight() == 0 {
			continue
		}
		out[a] += uint64(t.GetWeight())
	}
	return out
}

func compareAddrs(a, b netip.Addr) int { return a.Compare(b) }

// familyChange is the change of the family's total weight in percent of
// from's; nil when from serves none of the family.
func familyChange(from, to map[netip.Addr]uint64, in func(netip.Addr) bool) *float64 {
	var a, b uint64
	for addr, w := range from {
		if in(addr) {
			a += w
		}
	}
	for addr, w := range to {
		if in(addr) {
			b += w
		}
	}
	if a == 0 {
		return nil
	}
	pct := (float64(b) - float64(a)) / float64(a) * 100
	return &pct
}
