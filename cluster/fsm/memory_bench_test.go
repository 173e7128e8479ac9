package fsm

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// BenchmarkRetainedMemory measures what a replica holds per endpoint: n
// endpoints of four targets each, applied, and keepLast plans kept, each
// changing 1% of the endpoints from the one before (the scale issue's
// figure). Each plan arrives as a fresh message, as one decoded from the
// log does. It reports the live heap per endpoint after a GC.
func BenchmarkRetainedMemory(b *testing.B) {
	const keepLast = 10
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			var perEndpoint float64
			for range b.N {
				b.StopTimer()
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				b.StartTimer()
				h := newHarness(b)
				h.s.config.MaxPlanChange = nil // the first plan changes everything
				l := h.mustAcquire("enactor/0", "az-a", time.Hour)
				for g := range keepLast {
					gen := h.mustSubmit(scalePlan(n, g))
					h.mustApply(gen, l.Name, l.Token, "az-a")
				}
				b.StopTimer()
				if got := h.s.NumPlans(); got != keepLast {
					b.Fatalf("%d plans kept, want %d", got, keepLast)
				}
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				perEndpoint = float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
				runtime.KeepAlive(h)
			}
			b.ReportMetric(perEndpoint, "B/endpoint")
		})
	}
}

// scalePlan is generation g of n endpoints: endpoint i's weights change
// in plan g when i%100 == g%100, 1% of the endpoints per plan.
func scalePlan(n, g int) *pb.Plan {
	p := &pb.Plan{PlannerId: "planner"}
	for i := range n {
		w := uint32(100)
		if i%100 < g%100 {
			w = 100 + uint32(g)
		}
		ep := &pb.EndpointPlan{Name: fmt.Sprintf("e%06d.region.dnsplan.test.", i), Ttl: 60}
		for t := range 4 {
			ep.Targets = append(ep.Targets, &pb.Target{Id: fmt.Sprintf("lb-%d", t), Address: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, (i&255)^t), Weight: w})
		}
		p.Endpoints = append(p.Endpoints, ep)
	}
	return p
}
