package cluster

import (
	"testing"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/internal/dnswatch"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// A node started with --legacy reproduces the AWS failure end to end: an
// old plan written over a newer one, then deleted by the age-based
// clean-up, and DNS answers nothing. A node without it refuses the legacy
// commands.
func TestLegacyNodeEmptiesDNS(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.Legacy = true }).withDNS()
	c.startAll()
	l := c.leader()
	ctx := ctxT(t)
	a := c.api(l.ID())
	legacy := pb.NewLegacyServiceClient(a.conn)
	for range 12 {
		if _, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 10, 10)}); err != nil {
			t.Fatal(err)
		}
	}
	dnsAddr := c.specs[l.ID()].dnsAddr
	if _, err := legacy.LegacyApply(ctx, &pb.LegacyApplyRequest{Generation: 12, Endpoint: "api.dnsplan.test.", EnactorId: "b"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "generation 12 served", func() bool {
		return len(dnswatch.Addresses(query(t, "udp", dnsAddr, "api.dnsplan.test.", dns.TypeA, 0))) == 2
	})
	if _, err := legacy.LegacyApply(ctx, &pb.LegacyApplyRequest{Generation: 2, Endpoint: "api.dnsplan.test.", EnactorId: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := legacy.LegacyCleanup(ctx, &pb.LegacyCleanupRequest{KeepGenerations: 5}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the empty answer", func() bool {
		r := query(t, "udp", dnsAddr, "api.dnsplan.test.", dns.TypeA, 0)
		return len(dnswatch.Addresses(r)) == 0
	})
	if st, _ := l.Status(); !st.Legacy {
		t.Fatal("status does not say the node is legacy")
	}

	fixed := newTestCluster(t, 1, nil)
	fixed.startAll()
	fl := fixed.leader()
	_, err := pb.NewLegacyServiceClient(fixed.api(fl.ID()).conn).LegacyApply(ctx, &pb.LegacyApplyRequest{Generation: 1, Endpoint: "api.dnsplan.test.", EnactorId: "a"})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("legacy apply on a fixed node = %v, want Unimplemented", err)
	}
}
