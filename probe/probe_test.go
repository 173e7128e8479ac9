package probe_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/cluster/dnsserver"
	"github.com/dnsplan/dnsplan/probe"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

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
	srv, err := dnsserver.New(dnsserver.Config{Logger: quiet()})
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
		Logger:    quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, 5*time.Second, "generation 2 seen", func() bool { return p.Summary().Generations["api.dnsplan.test."] == 2 })
	if n := len(p.Summary().Violations); n != 0 {
		t.Fatalf("violations on a correct server: %v", p.Summary().Violations)
	}
	srv.Update(applied(1, "192.0.2.1"))
	waitFor(t, 5*time.Second, "an I1 violation", func() bool { return p.Summary().Count("I1") > 0 })
	srv.Update(nil)
	waitFor(t, 5*time.Second, "an I2 violation", func() bool { return p.Summary().Count("I2") > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Against a real node that is restarted: the probe records the outage as
// unavailability and finds no violation (the restarted node does not serve
// older records than before).
func TestProbeRealNodeRestart(t *testing.T) {
	dir := t.TempDir()
	// start runs the node on the given addresses ("127.0.0.1:0" picks
	// free ones; a restart passes the ones it had).
	start := func(grpcAddr, dnsAddr string) (*cluster.Node, string, string) {
		t.Helper()
		var raftL, grpcL, dnsT net.Listener
		var dnsU net.PacketConn
		waitFor(t, 10*time.Second, "ports free", func() bool {
			var err error
			for _, l := range []io.Closer{raftL, grpcL, dnsT, dnsU} {
				if l != nil {
					l.Close()
				}
			}
			raftL, grpcL, dnsT, dnsU = nil, nil, nil, nil
			if raftL, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				return false
			}
			if grpcL, err = net.Listen("tcp", grpcAddr); err != nil {
				return false
			}
			if dnsU, err = net.ListenPacket("udp", dnsAddr); err != nil {
				return false
			}
			dnsT, err = net.Listen("tcp", dnsU.LocalAddr().String())
			return err == nil
		})
		n, err := cluster.Start(cluster.Config{
			ID: "n1", DataDir: filepath.Join(dir, "n1"),
			RaftListener: raftL, GRPCListener: grpcL, DNSPacketConn: dnsU, DNSListener: dnsT,
			HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond, LeaderLeaseTimeout: 100 * time.Millisecond,
			Logger: quiet(), RaftLogOutput: io.Discard,
		})
		if err != nil {
			t.Fatal(err)
		}
		return n, grpcL.Addr().String(), dnsU.LocalAddr().String()
	}
	n, grpcAddr, dnsAddr := start("127.0.0.1:0", "127.0.0.1:0")
	c, err := client.New([]string{grpcAddr}, client.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
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
		Logger:   quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- p.Run(pctx) }()
	waitFor(t, 10*time.Second, "endpoint discovered and seen", func() bool { return p.Summary().Generations["api.dnsplan.test."] == 1 })
	apply(11)
	waitFor(t, 10*time.Second, "generation 2 seen", func() bool { return p.Summary().Generations["api.dnsplan.test."] == 2 })
	n.Close()
	waitFor(t, 10*time.Second, "the outage seen", func() bool { return len(p.Summary().Unavailable) > 0 })
	n, _, _ = start(grpcAddr, dnsAddr)
	defer n.Close()
	apply(12)
	waitFor(t, 20*time.Second, "generation 3 seen", func() bool { return p.Summary().Generations["api.dnsplan.test."] == 3 })
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
