package probe_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/cluster/dnsserver"
	"github.com/dnsplan/dnsplan/probe"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

func applied(gen uint64, addrs ...string) []*pb.AppliedEndpoint {
	a := &pb.AppliedEndpoint{Endpoint: "api.dnsplan.test.", Generation: gen, Ttl: 30, Revision: gen, EnactorId: "e"}
	for _, addr := range addrs {
		a.Targets = append(a.Targets, &pb.Target{Id: addr, Address: addr, Weight: 1})
	}
	return []*pb.AppliedEndpoint{a}
}

// The checker catches what it exists to catch: a DNS server whose
// generation goes back (I1) and one that answers an endpoint empty (I2).
func TestProbeCatchesRegressionAndEmptyAnswer(t *testing.T) {
	log := clustertest.Logger(t)
	srv, err := dnsserver.New(dnsserver.Config{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(pc, nil); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.Update(applied(2, "192.0.2.1"))

	p, err := probe.New(probe.Config{
		Nodes:     []probe.Node{{Name: "bad", DNS: pc.LocalAddr().String()}},
		Endpoints: []string{"api.dnsplan.test."},
		Interval:  5 * time.Millisecond,
		Logger:    log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	clustertest.WaitFor(t, 5*time.Second, "generation 2 seen", func() bool { return p.Summary().Generations["api.dnsplan.test."] == 2 })
	if n := len(p.Summary().Violations); n != 0 {
		t.Fatalf("violations on a correct server: %v", p.Summary().Violations)
	}
	srv.Update(applied(1, "192.0.2.1"))
	clustertest.WaitFor(t, 5*time.Second, "an I1 violation", func() bool { return p.Summary().Count("I1") > 0 })
	srv.Update(nil)
	clustertest.WaitFor(t, 5*time.Second, "an I2 violation", func() bool { return p.Summary().Count("I2") > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Against a real node that is restarted: the probe records the outage as
// unavailability and finds no violation (the restarted node does not serve
// older records than before).
func TestProbeRealNodeRestart(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{Nodes: 1, DNS: true})
	c := tc.Client()
	dnsAddr := tc.DNSAddrs[0]
	ctx := context.Background()
	lease, err := c.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/0", Holder: "az-a", Ttl: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	apply := func(weight uint32) {
		t.Helper()
		plan := &pb.Plan{Endpoints: []*pb.EndpointPlan{{Name: "api.dnsplan.test.", Ttl: 30,
			Targets: []*pb.Target{{Id: "a", Address: "192.0.2.1", Weight: 10}, {Id: "b", Address: "192.0.2.2", Weight: weight}}}}}
		r, err := c.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: r.Generation, LeaseName: "enactor/0", LeaseToken: lease.Token, EnactorId: "az-a"}); err != nil {
			t.Fatal(err)
		}
	}
	apply(10)

	p, err := probe.New(probe.Config{
		Nodes:    []probe.Node{{Name: "n1", DNS: dnsAddr}},
		Cluster:  c,
		Interval: 10 * time.Millisecond,
		Logger:   tc.Log,
	})
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- p.Run(pctx) }()
	clustertest.WaitFor(t, 10*time.Second, "endpoint discovered and seen", func() bool { return p.Summary().Generations["api.dnsplan.test."] == 1 })
	apply(11)
	clustertest.WaitFor(t, 10*time.Second, "generation 2 seen", func() bool { return p.Summary().Generations["api.dnsplan.test."] == 2 })
	tc.Stop(0)
	clustertest.WaitFor(t, 10*time.Second, "the outage seen", func() bool { return len(p.Summary().Unavailable) > 0 })
	tc.Restart(0)
	apply(12)
	clustertest.WaitFor(t, 20*time.Second, "generation 3 seen", func() bool { return p.Summary().Generations["api.dnsplan.test."] == 3 })
	cancel()
	<-done
	s := p.Summary()
	if len(s.Violations) != 0 {
		t.Fatalf("violations: %+v", s.Violations)
	}
	for _, w := range s.Unavailable {
		if w.To.IsZero() {
			t.Fatalf("window still open after Run returned: %+v", w)
		}
	}
}
