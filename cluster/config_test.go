package cluster

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Hole 13: a fixed cluster with one --legacy member that became leader ran
// the unsafe rules. The design is the cluster's, founded by its first
// leader. Apply refuses legacy commands whatever node leads and proposes
// them, and a --legacy member stops itself as soon as its replica shows
// the fixed design.
func TestFixedClusterRefusesLegacyLeader(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.Legacy = cfg.ID == "n3" })
	c.start("n1")
	c.start("n2")
	founder := c.leader()
	var design pb.Design
	founder.State(func(s *fsm.State) { design = s.Config().GetDesign() })
	if design != pb.Design_DESIGN_FIXED {
		t.Fatalf("founded design %v, want fixed", design)
	}
	ctx := ctxT(t)
	g, err := c.api(founder.ID()).plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 10)})
	if err != nil {
		t.Fatal(err)
	}

	rogue := c.start("n3")
	select {
	case err := <-rogue.Fatal():
		if !errors.Is(err, ErrDesignMismatch) {
			t.Fatalf("n3 stopped with %v, want ErrDesignMismatch", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a --legacy node of a fixed cluster kept running")
	}

	// Whatever node leads and proposes it, Apply refuses the command.
	_, err = c.leader().propose(ctx, &pb.LegacyApplyRequest{Generation: g.Generation, Endpoint: "api.dnsplan.test.", EnactorId: "rogue"})
	if !errors.Is(err, fsm.ErrDesign) || status.Code(toStatus(err)) != codes.FailedPrecondition {
		t.Fatalf("legacy apply proposed by the leader of a fixed cluster = %v, want ErrDesign", err)
	}
	for _, id := range []string{"n1", "n2"} {
		var a *pb.AppliedEndpoint
		c.node(id).State(func(s *fsm.State) { a = s.Applied("api.dnsplan.test.") })
		if a != nil {
			t.Fatalf("%s: the refused legacy apply changed the state: %v", id, a)
		}
	}
}

// A node restarted with the other design refuses to start, checked right
// after Raft restored its snapshot.
func TestDesignMismatchRefusesStart(t *testing.T) {
	legacy := false
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.Legacy = legacy })
	c.startAll()
	l := c.leader()
	if err := l.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	c.stop("n1")
	legacy = true
	_, err := Start(c.config(c.specs["n1"]))
	if !errors.Is(err, ErrDesignMismatch) {
		t.Fatalf("restart with --legacy on a fixed cluster = %v, want ErrDesignMismatch", err)
	}
}

// Hole 9: --max-capacity-drop 0 silently became 0.5. Zero means no drop
// without force: the cluster is founded with 0 and refuses a 1% drop of
// what it serves.
func TestMaxCapacityDropZero(t *testing.T) {
	zero := 0.0
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.MaxCapacityDrop = &zero })
	c.startAll()
	l := c.leader()
	var drop float64
	l.State(func(s *fsm.State) { drop = s.Config().GetMaxCapacityDrop() })
	if drop != 0 {
		t.Fatalf("founded with max capacity drop %v, want 0", drop)
	}
	ctx := ctxT(t)
	a := c.api(l.ID())
	applyAll(t, a, samplePlan("api.dnsplan.test.", 100))
	_, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 99)})
	if status.Code(err) != codes.FailedPrecondition || client.Reason(err) != contract.ReasonVelocity {
		t.Fatalf("a 1%% drop with limit 0 = %v, want FAILED_PRECONDITION, reason velocity", err)
	}
}

// applyAll submits p and applies it everywhere.
func applyAll(t *testing.T, a api, p *pb.Plan) *pb.ApplyPlanResponse {
	t.Helper()
	g, err := a.plans.SubmitPlan(ctxT(t), &pb.SubmitPlanRequest{Plan: p})
	if err != nil {
		t.Fatal(err)
	}
	return applyGen(t, a, g.Generation)
}

// applyGen applies a generation everywhere under a lease of its own.
func applyGen(t *testing.T, a api, gen uint64) *pb.ApplyPlanResponse {
	t.Helper()
	ctx := ctxT(t)
	l, err := a.leases.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/test", Holder: "test", Ttl: ttl(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.enact.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: gen, LeaseName: l.Name, LeaseToken: l.Token, EnactorId: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// GetConfig and SetConfig through a follower (forwarded like every
// write), validated at the edge; a change reaches every replica, and the
// limit applies at once to what is applied.
func TestConfigRPCs(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.startAll()
	c.activated()
	f := c.api(c.follower().ID())
	ctx := ctxT(t)
	var got *pb.ClusterConfig
	waitFor(t, 10*time.Second, "a linearizable GetConfig through a follower", func() bool {
		var err error
		got, err = f.cluster.GetConfig(ctx, &pb.GetConfigRequest{})
		return err == nil
	})
	if !proto.Equal(got, fsm.DefaultConfig()) {
		t.Fatalf("config %v, want the defaults %v", got, fsm.DefaultConfig())
	}
	for _, bad := range []*pb.SetConfigRequest{
		{},
		{MaxCapacityDrop: proto.Float64(2)},
		{VelocityWindow: ttl(0)},
		{VelocityWindow: ttl(48 * time.Hour)},
		{MaxPlanChange: proto.Float64(0)},
		{MaxPlanChange: proto.Float64(1.5)},
		{MaxReadBackFailures: proto.Float64(0.4)},
		{MaxReadBackFailures: proto.Float64(1.1)},
	} {
		if _, err := f.cluster.SetConfig(ctx, bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("SetConfig(%v) = %v, want INVALID_ARGUMENT", bad, err)
		}
	}
	want := &pb.ClusterConfig{Design: pb.Design_DESIGN_FIXED, MaxCapacityDrop: 0.1, VelocityWindow: ttl(time.Hour), MaxPlanChange: proto.Float64(0.5),
		MaxVelocityRefusals: proto.Uint32(fsm.DefaultMaxVelocityRefusals), MaxReadBackFailures: proto.Float64(0.75)}
	got, err := f.cluster.SetConfig(ctx, &pb.SetConfigRequest{MaxCapacityDrop: proto.Float64(0.1), VelocityWindow: ttl(time.Hour),
		MaxPlanChange: proto.Float64(0.5), MaxReadBackFailures: proto.Float64(0.75)})
	if err != nil || !proto.Equal(got, want) {
		t.Fatalf("SetConfig = %v, %v; want %v", got, err, want)
	}
	for _, id := range c.order {
		waitFor(t, 5*time.Second, id+" to apply the new config and report it in Status", func() bool {
			got, err := c.api(id).cluster.GetConfig(ctx, &pb.GetConfigRequest{Stale: true})
			st, serr := c.api(id).cluster.Status(ctx, &pb.StatusRequest{})
			return err == nil && proto.Equal(got, want) && serr == nil && proto.Equal(st.GetConfig(), want)
		})
	}

	// Both submitted while nothing is served, so only Apply can judge.
	var gens []uint64
	for _, p := range []*pb.Plan{samplePlan("api.dnsplan.test.", 100, 100), samplePlan("api.dnsplan.test.", 100, 50)} {
		g, err := f.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: p})
		if err != nil {
			t.Fatal(err)
		}
		gens = append(gens, g.Generation)
	}
	applyGen(t, f, gens[0])
	r := applyGen(t, f, gens[1]).GetResults()[0]
	if r.GetOutcome() != pb.Outcome_OUTCOME_REFUSED || r.GetReason() != "VELOCITY" || r.GetDetail() == "" {
		t.Fatalf("a 25%% drop with limit 10%% = %v, want OUTCOME_REFUSED, reason VELOCITY", r)
	}
}
