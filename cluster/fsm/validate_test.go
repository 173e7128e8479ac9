package fsm

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// otherSentinels are the sentinels a validation error must not wrap.
var otherSentinels = []error{ErrVelocity, ErrLeaseHeld, ErrFenced, ErrFrozen, ErrNotFound}

func manyTargets(n int) []*pb.Target {
	ts := make([]*pb.Target, n)
	for i := range ts {
		ts[i] = target(fmt.Sprintf("lb-%d", i), "192.0.2.10", 1)
	}
	return ts
}

// planOfSize builds a valid plan whose encoding is exactly want bytes: full
// endpoints of large targets, then small targets, then one target whose id
// length takes up the last few bytes.
func planOfSize(tb testing.TB, want int) *pb.Plan {
	tb.Helper()
	p := &pb.Plan{PlannerId: "planner-1"}
	field := func(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n } // tag, length, body
	size := proto.Size(p)
	big := strings.Repeat("x", 100)
	var ep *pb.EndpointPlan
	var epSize int
	add := func(t *pb.Target) {
		if ep == nil || len(ep.Targets) == contract.MaxTargetsPerEndpoint {
			ep = &pb.EndpointPlan{Name: fmt.Sprintf("e%d.dnsplan.test.", len(p.Endpoints)), Ttl: 30}
			p.Endpoints = append(p.Endpoints, ep)
			epSize = proto.Size(ep)
			size += field(epSize)
		}
		t.Id = fmt.Sprintf("%s%d", t.Id, len(ep.Targets))
		size -= field(epSize)
		epSize += field(proto.Size(t))
		size += field(epSize)
		ep.Targets = append(ep.Targets, t)
	}
	for size < want-4000 {
		add(&pb.Target{Id: big, Address: "192.0.2.10", Weight: 1})
	}
	for size < want-100 {
		add(&pb.Target{Id: "t", Address: "192.0.2.10", Weight: 1})
	}
	last := &pb.Target{Id: strings.Repeat("y", 10), Address: "192.0.2.10", Weight: 1}
	add(last)
	// Inside this range one more id byte is exactly one more plan byte.
	last.Id += strings.Repeat("z", want-size)
	if got := proto.Size(p); got != want {
		tb.Fatalf("planOfSize: built %d bytes, want %d", got, want)
	}
	return p
}

// TestValidatePlan covers every invalid-plan case of docs/CONTRACT.md and the
// limits next to them. Each invalid plan is also refused by SubmitPlan
// with ErrInvalid and leaves nothing stored.
func TestValidatePlan(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	// 253 and 254 characters before the final dot, every label legal.
	name253 := strings.Join([]string{long(63), long(63), long(63), long(61)}, ".") + "."
	name254 := strings.Join([]string{long(63), long(63), long(63), long(62)}, ".") + "."
	tests := []struct {
		name  string
		plan  func() *pb.Plan
		valid bool
	}{
		{"valid", validPlan, true},
		{"nil plan", func() *pb.Plan { return nil }, false},
		{"no endpoints", func() *pb.Plan { return plan() }, false},
		{"nil endpoint", func() *pb.Plan { return &pb.Plan{Endpoints: []*pb.EndpointPlan{nil}} }, false},
		{"empty targets", func() *pb.Plan { return plan(endpoint("api.dnsplan.test.")) }, false},
		{"nil target", func() *pb.Plan { return plan(endpoint("api.dnsplan.test.", nil)) }, false},
		{"all weights 0", func() *pb.Plan { return plan(weighted("api.dnsplan.test.", 0, 0, 0)) }, false},
		{"one weight of several > 0", func() *pb.Plan { return plan(weighted("api.dnsplan.test.", 0, 0, 1)) }, true},
		{"second endpoint all weights 0", func() *pb.Plan {
			return plan(weighted("api.dnsplan.test.", 1), weighted("fips.dnsplan.test.", 0))
		}, false},
		{"duplicate target ids", func() *pb.Plan {
			return plan(endpoint("api.dnsplan.test.", target("lb-a", "192.0.2.10", 1), target("lb-a", "192.0.2.11", 1)))
		}, false},
		{"same address under two ids", func() *pb.Plan {
			return plan(endpoint("api.dnsplan.test.", target("lb-a", "192.0.2.10", 1), target("lb-b", "192.0.2.10", 1)))
		}, true},
		{"empty target id", func() *pb.Plan { return plan(endpoint("api.dnsplan.test.", target("", "192.0.2.10", 1))) }, false},
		{"target id of 128 bytes", func() *pb.Plan { return plan(endpoint("api.dnsplan.test.", target(long(128), "192.0.2.10", 1))) }, true},
		{"target id of 129 bytes", func() *pb.Plan { return plan(endpoint("api.dnsplan.test.", target(long(129), "192.0.2.10", 1))) }, false},
		{"planner id of 129 bytes", func() *pb.Plan { p := validPlan(); p.PlannerId = long(129); return p }, false},
		{"duplicate endpoints", func() *pb.Plan { return plan(weighted("api.dnsplan.test.", 1), weighted("api.dnsplan.test.", 2)) }, false},
		{"duplicate endpoints differing in case", func() *pb.Plan {
			return plan(weighted("api.dnsplan.test.", 1), weighted("API.DnsPlan.Test.", 2))
		}, false},
		{"upper-case name", func() *pb.Plan { return plan(weighted("API.DNSPLAN.TEST.", 1)) }, true},
		{"underscore label", func() *pb.Plan { return plan(weighted("_dns.dnsplan.test.", 1)) }, true},
		{"name without final dot", func() *pb.Plan { return plan(weighted("api.dnsplan.test", 1)) }, false},
		{"empty name", func() *pb.Plan { return plan(weighted("", 1)) }, false},
		{"root name", func() *pb.Plan { return plan(weighted(".", 1)) }, false},
		{"empty label", func() *pb.Plan { return plan(weighted("api..dnsplan.test.", 1)) }, false},
		{"label of 63", func() *pb.Plan { return plan(weighted(long(63)+".test.", 1)) }, true},
		{"label of 64", func() *pb.Plan { return plan(weighted(long(64)+".test.", 1)) }, false},
		{"name of 253", func() *pb.Plan { return plan(weighted(name253, 1)) }, true},
		{"name of 254", func() *pb.Plan { return plan(weighted(name254, 1)) }, false},
		{"label starting with hyphen", func() *pb.Plan { return plan(weighted("-api.dnsplan.test.", 1)) }, false},
		{"label ending with hyphen", func() *pb.Plan { return plan(weighted("api-.dnsplan.test.", 1)) }, false},
		{"space in name", func() *pb.Plan { return plan(weighted("api dnsplan.test.", 1)) }, false},
		{"wildcard", func() *pb.Plan { return plan(weighted("*.dnsplan.test.", 1)) }, false},
		{"non-ASCII name", func() *pb.Plan { return plan(weighted("ápi.dnsplan.test.", 1)) }, false},
		{"TTL 0", func() *pb.Plan { p := validPlan(); p.Endpoints[0].Ttl = 0; return p }, false},
		{"TTL 1", func() *pb.Plan { p := validPlan(); p.Endpoints[0].Ttl = 1; return p }, true},
		{"TTL 86400", func() *pb.Plan { p := validPlan(); p.Endpoints[0].Ttl = contract.MaxTTL; return p }, true},
		{"TTL 86401", func() *pb.Plan { p := validPlan(); p.Endpoints[0].Ttl = contract.MaxTTL + 1; return p }, false},
		{"1000 targets", func() *pb.Plan { return plan(endpoint("api.dnsplan.test.", manyTargets(1000)...)) }, true},
		{"1001 targets", func() *pb.Plan { return plan(endpoint("api.dnsplan.test.", manyTargets(1001)...)) }, false},
		{"exactly 4 MiB", func() *pb.Plan { return planOfSize(t, contract.MaxPlanBytes) }, true},
		{"4 MiB + 1 byte", func() *pb.Plan { return planOfSize(t, contract.MaxPlanBytes+1) }, false},
		{"IPv6 target", func() *pb.Plan { return plan(endpoint("v6.dnsplan.test.", target("a", "2001:db8::1", 1))) }, true},
	}
	for _, addr := range []string{"", "not-an-ip", "api.dnsplan.test", "192.0.2.256", "192.0.2", "192.0.2.010", "192.0.2.0/24",
		"::ffff:192.0.2.10", "::ffff:c000:20a", "fe80::1%eth0", "192.0.2.10%eth0", "0.0.0.0", "::", " 192.0.2.10", "[2001:db8::1]"} {
		tests = append(tests, struct {
			name  string
			plan  func() *pb.Plan
			valid bool
		}{"address " + addr, func() *pb.Plan { return plan(endpoint("api.dnsplan.test.", target("a", addr, 1))) }, false})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.plan()
			before := proto.Clone(p)
			err := contract.ValidatePlan(p)
			if !proto.Equal(p, before) {
				t.Errorf("ValidatePlan changed the plan")
			}
			if tc.valid {
				if err != nil {
					t.Fatalf("ValidatePlan: %v, want valid", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ValidatePlan = %v, want ErrInvalid", err)
			}
			for _, other := range otherSentinels {
				if errors.Is(err, other) {
					t.Errorf("ValidatePlan = %v, also wraps %v", err, other)
				}
			}
			if Reason(err) != contract.ReasonInvalid {
				t.Errorf("Reason = %q, want invalid", Reason(err))
			}

			h := newHarness(t)
			r := h.submit(p, true)
			if !errors.Is(r.Err, ErrInvalid) || r.Generation != 0 {
				t.Fatalf("SubmitPlan = %+v, want ErrInvalid", r)
			}
			if h.s.NumPlans() != 0 || h.s.NextGeneration() != 1 {
				t.Fatalf("refused plan changed the state: %v", h.s)
			}
			ev := h.s.History(0)
			if len(ev) != 1 || ev[0].Kind != "submit" || ev[0].Outcome != "rejected" || ev[0].Reason != err.Error() {
				t.Fatalf("history = %v, want one rejected submit", ev)
			}
		})
	}
}

// TestSubmitExactlyMaxPlanBytes: a plan at the size limit is stored.
func TestSubmitExactlyMaxPlanBytes(t *testing.T) {
	h := newHarness(t)
	gen := h.mustSubmit(planOfSize(t, contract.MaxPlanBytes))
	if h.s.Plan(gen) == nil {
		t.Fatalf("plan of %d bytes not stored", contract.MaxPlanBytes)
	}
}
