package cluster

import (
	"fmt"
	"slices"
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

// Founding nodes started at once, in any order, form one cluster, and every
// node learns every member's gRPC address.
func TestSimultaneousStart(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.startAll()
	c.leader()
	for _, id := range c.order {
		waitFor(t, 10*time.Second, id+" sees every member's gRPC address", func() bool {
			st, err := c.node(id).Status()
			if err != nil || len(st.Members) != 3 || st.LeaderId == "" {
				return false
			}
			for _, m := range st.Members {
				if m.GrpcAddr == "" || !m.Voter {
					return false
				}
			}
			return true
		})
	}
}

// A write sent to a follower is forwarded to the leader, and a
// linearizable read through another follower sees it at once.
func TestWriteThroughFollower(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.startAll()
	l := c.leader()
	var followers []string
	for _, id := range c.order {
		if id != l.ID() {
			followers = append(followers, id)
		}
	}
	ctx := ctxT(t)
	waitFor(t, 10*time.Second, "leader address known", func() bool {
		_, addr := c.node(followers[0]).leader()
		return addr != ""
	})
	resp, err := c.api(followers[0]).plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 10, 10)})
	if err != nil {
		t.Fatalf("submit through follower: %v", err)
	}
	got, err := c.api(followers[1]).plans.GetPlan(ctx, &pb.GetPlanRequest{Generation: resp.Generation})
	if err != nil {
		t.Fatalf("linearizable read through follower: %v", err)
	}
	if got.Generation != resp.Generation || got.Endpoints[0].Name != "api.dnsplan.test." {
		t.Fatalf("read %v, want generation %d", got, resp.Generation)
	}
}

// Killing the leader elects a new one; writes continue and every write
// acknowledged before or after is still there.
func TestLeaderKill(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.startAll()
	old := c.leader()
	ctx := ctxT(t)
	var acked []uint64
	submit := func(via string) {
		t.Helper()
		var resp *pb.SubmitPlanResponse
		waitFor(t, 15*time.Second, "a submit to succeed", func() bool {
			var err error
			resp, err = c.api(via).plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 10, 10)})
			if err != nil && status.Code(err) != codes.Unavailable {
				t.Fatalf("submit: %v", err)
			}
			return err == nil
		})
		acked = append(acked, resp.Generation)
	}
	for range 5 {
		submit(old.ID())
	}
	c.stop(old.ID())
	nl := c.leader()
	if nl.ID() == old.ID() {
		t.Fatal("stopped node still leads")
	}
	for range 5 {
		submit(nl.ID())
	}
	list, err := c.api(nl.ID()).plans.ListPlans(ctx, &pb.ListPlansRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var have []uint64
	for _, p := range list.Plans {
		have = append(have, p.Generation)
	}
	for _, g := range acked {
		if !slices.Contains(have, g) {
			t.Fatalf("acknowledged generation %d lost; have %v", g, have)
		}
	}
	// The old leader rejoins as a follower and catches up.
	c.start(old.ID())
	waitFor(t, 15*time.Second, "old leader catches up", func() bool {
		var n int
		c.node(old.ID()).State(func(s *fsm.State) { n = s.NumPlans() })
		return n == len(acked)
	})
}

// A full-cluster restart from disk keeps plans, leases, applied records and
// the generation counter.
func TestFullRestart(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.startAll()
	l := c.leader()
	ctx := ctxT(t)
	a := c.api(l.ID())
	var gen uint64
	for range 3 {
		r, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 10, 20)})
		if err != nil {
			t.Fatal(err)
		}
		gen = r.Generation
	}
	lease, err := a.leases.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/0", Holder: "az-a", Ttl: ttl(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.enact.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: gen, LeaseName: "enactor/0", LeaseToken: lease.Token, EnactorId: "az-a"}); err != nil {
		t.Fatal(err)
	}
	c.closeAll()
	c.startAll()
	l = c.leader()
	a = c.api(l.ID())
	applied, err := a.enact.GetApplied(ctx, &pb.GetAppliedRequest{Endpoint: "api.dnsplan.test."})
	if err != nil {
		t.Fatalf("applied record lost: %v", err)
	}
	if applied.Generation != gen || len(applied.Targets) != 2 {
		t.Fatalf("applied = %v, want generation %d with 2 targets", applied, gen)
	}
	leases, err := a.leases.ListLeases(ctx, &pb.ListLeasesRequest{})
	if err != nil || len(leases.Leases) != 1 || leases.Leases[0].Token != lease.Token {
		t.Fatalf("leases after restart = %v, %v; want token %d", leases, err, lease.Token)
	}
	r, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 10, 20)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Generation != gen+1 {
		t.Fatalf("generation after restart = %d, want %d", r.Generation, gen+1)
	}
	var plans int
	l.State(func(s *fsm.State) { plans = s.NumPlans() })
	if plans != 4 {
		t.Fatalf("plans after restart = %d, want 4", plans)
	}
}

// A node that joins after many writes catches up from a snapshot: the log
// it would need has been compacted away.
func TestJoinCatchesUpFromSnapshot(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 20
		cfg.SnapshotInterval = 50 * time.Millisecond
		cfg.TrailingLogs = 5
	})
	c.startAll()
	l := c.leader()
	ctx := ctxT(t)
	a := c.api(l.ID())
	const writes = 60
	for range writes {
		if _, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 10, 10)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "leader snapshot", func() bool {
		st, _ := l.Status()
		return st.LastSnapshotIndex > 0
	})
	first, err := l.store.FirstIndex()
	if err != nil || first <= 1 {
		t.Fatalf("log not compacted: first index %d, %v", first, err)
	}
	j := c.addJoiner("n4", c.specs[c.follower().ID()].grpcAddr)
	waitFor(t, 20*time.Second, "joiner catches up", func() bool {
		var n int
		j.State(func(s *fsm.State) { n = s.NumPlans() })
		return n == writes
	})
	// The snapshot may predate the joiner's own AddVoter entry, which
	// arrives in the log after it.
	var st *pb.StatusResponse
	waitFor(t, 10*time.Second, "the joiner to see four members", func() bool {
		var err error
		st, err = j.Status()
		return err == nil && len(st.Members) == 4
	})
	if st.LastSnapshotIndex == 0 {
		// A follower that installed the leader's snapshot records it.
		t.Fatalf("joiner did not install a snapshot: %v", st)
	}
}

// RemoveServer shrinks the configuration; TransferLeadership moves the
// leader to the named voter.
func TestRemoveServerAndTransferLeadership(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.startAll()
	l := c.leader()
	ctx := ctxT(t)
	var target string
	for _, id := range c.order {
		if id != l.ID() {
			target = id
			break
		}
	}
	waitFor(t, 10*time.Second, "addresses registered", func() bool {
		st, _ := l.Status()
		for _, m := range st.Members {
			if m.GrpcAddr == "" {
				return false
			}
		}
		return true
	})
	resp, err := c.api(target).cluster.TransferLeadership(ctx, &pb.TransferLeadershipRequest{Id: target})
	if err != nil {
		t.Fatalf("transfer: %v", err)
	}
	if resp.LeaderId != target {
		t.Fatalf("transfer reported leader %q, want %q", resp.LeaderId, target)
	}
	if nl := c.leader(); nl.ID() != target {
		t.Fatalf("leader is %s, want %s", nl.ID(), target)
	}
	if _, err := c.api(target).cluster.RemoveServer(ctx, &pb.RemoveServerRequest{Id: l.ID()}); err != nil {
		t.Fatalf("remove: %v", err)
	}
	st, err := c.node(target).Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 2 || slices.ContainsFunc(st.Members, func(m *pb.Member) bool { return m.Id == l.ID() }) {
		t.Fatalf("members after remove = %v", st.Members)
	}
	if _, err := c.api(target).cluster.RemoveServer(ctx, &pb.RemoveServerRequest{Id: "nobody"}); status.Code(err) != codes.NotFound {
		t.Fatalf("remove unknown = %v, want NotFound", err)
	}
	// The two remaining voters still take writes.
	if _, err := c.api(target).plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 1)}); err != nil {
		t.Fatalf("write after remove: %v", err)
	}
}

// A watch stream that loses its node resumes on another from the next
// generation, with no gap and no duplicate.
func TestWatchPlansResumesOnAnotherNode(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.startAll()
	l := c.leader()
	f := c.follower()
	ctx := ctxT(t)
	a := c.api(l.ID())
	submit := func(a api) {
		t.Helper()
		waitFor(t, 15*time.Second, "submit", func() bool {
			_, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 5)})
			return err == nil
		})
	}
	for range 3 {
		submit(a)
	}
	var seen []uint64
	stream, err := c.api(f.ID()).plans.WatchPlans(ctx, &pb.WatchPlansRequest{FromGeneration: 1})
	if err != nil {
		t.Fatal(err)
	}
	for len(seen) < 3 {
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, m.Plan.Generation)
	}
	c.stop(f.ID())
	if _, err := stream.Recv(); err == nil {
		t.Fatal("stream outlived its node")
	}
	var other string
	for _, id := range c.order {
		if c.node(id) != nil {
			other = id
		}
	}
	submit(c.api(other))
	submit(c.api(other))
	stream, err = c.api(other).plans.WatchPlans(ctx, &pb.WatchPlansRequest{FromGeneration: seen[len(seen)-1] + 1})
	if err != nil {
		t.Fatal(err)
	}
	for len(seen) < 5 {
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, m.Plan.Generation)
	}
	if !slices.Equal(seen, []uint64{1, 2, 3, 4, 5}) {
		t.Fatalf("watched generations %v, want 1..5 once each", seen)
	}
}

// WatchApplied resumes from a revision and sends each change.
func TestWatchApplied(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	c.startAll()
	l := c.leader()
	ctx := ctxT(t)
	a := c.api(l.ID())
	lease, err := a.leases.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/0", Holder: "az-a", Ttl: ttl(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := a.enact.WatchApplied(ctx, &pb.WatchAppliedRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for i := range 3 {
		r, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 5, uint32(i+1))})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.enact.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: r.Generation, LeaseName: "enactor/0", LeaseToken: lease.Token, EnactorId: "az-a"}); err != nil {
			t.Fatal(err)
		}
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.Endpoint.Generation != r.Generation || m.Endpoint.Revision <= last {
			t.Fatalf("watch sent %v after revision %d, want generation %d", m.Endpoint, last, r.Generation)
		}
		last = m.Endpoint.Revision
	}
}

// Fencing end to end over gRPC: an expired holder's old token is refused
// after another holder acquired a newer one, and nothing changes.
func TestFencingEndToEnd(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.startAll()
	l := c.leader()
	ctx := ctxT(t)
	a := c.api(c.follower().ID())
	waitFor(t, 10*time.Second, "leader address known", func() bool {
		_, err := a.leases.ListLeases(ctx, &pb.ListLeasesRequest{})
		return err == nil
	})
	g1, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 10, 10)})
	if err != nil {
		t.Fatal(err)
	}
	g2, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 10, 20)})
	if err != nil {
		t.Fatal(err)
	}
	la, err := a.leases.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/0", Holder: "az-a", Ttl: ttl(300 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.leases.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/0", Holder: "az-b", Ttl: ttl(time.Minute)}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("acquire of a held lease = %v, want FailedPrecondition", err)
	}
	var lb *pb.Lease
	waitFor(t, 10*time.Second, "A's lease to expire and B to acquire", func() bool {
		lb, err = a.leases.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/0", Holder: "az-b", Ttl: ttl(time.Minute)})
		return err == nil
	})
	if lb.Token <= la.Token {
		t.Fatalf("B's token %d not larger than A's %d", lb.Token, la.Token)
	}
	before := marshalApplied(t, l)
	_, err = a.enact.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: g2.Generation, LeaseName: "enactor/0", LeaseToken: la.Token, EnactorId: "az-a"})
	if status.Code(err) != codes.FailedPrecondition || client.Reason(err) != contract.ReasonFenced {
		t.Fatalf("apply with superseded token = %v (reason %q), want FailedPrecondition, fenced", err, client.Reason(err))
	}
	if _, err := a.leases.RenewLease(ctx, &pb.RenewLeaseRequest{Name: "enactor/0", Holder: "az-a", Token: la.Token}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("renew with superseded token = %v, want FailedPrecondition", err)
	}
	if after := marshalApplied(t, l); !proto.Equal(before, after) {
		t.Fatalf("fenced apply changed applied records: %v -> %v", before, after)
	}
	// B applies the newer plan; an older generation is then stale.
	res, err := a.enact.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: g2.Generation, LeaseName: "enactor/0", LeaseToken: lb.Token, EnactorId: "az-b"})
	if err != nil || res.Results[0].Outcome != pb.Outcome_OUTCOME_APPLIED {
		t.Fatalf("apply by B = %v, %v", res, err)
	}
	res, err = a.enact.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: g1.Generation, LeaseName: "enactor/0", LeaseToken: lb.Token, EnactorId: "az-b"})
	if err != nil || res.Results[0].Outcome != pb.Outcome_OUTCOME_STALE || res.Results[0].AppliedGeneration != g2.Generation {
		t.Fatalf("apply of older generation = %v, %v; want STALE at %d", res, err, g2.Generation)
	}
	got, err := a.enact.GetApplied(ctx, &pb.GetAppliedRequest{Endpoint: "api.dnsplan.test."})
	if err != nil || got.Generation != g2.Generation || got.EnactorId != "az-b" {
		t.Fatalf("applied = %v, %v; want generation %d by az-b", got, err, g2.Generation)
	}
	// Clean-up keeps the applied generation and the newest keep_last.
	for range 4 {
		if _, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 10, 20)}); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := a.enact.CleanupPlans(ctx, &pb.CleanupPlansRequest{KeepLast: 2})
	if err != nil {
		t.Fatal(err)
	}
	list, err := a.plans.ListPlans(ctx, &pb.ListPlansRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var kept []uint64
	for _, p := range list.Plans {
		kept = append(kept, p.Generation)
	}
	if want := []uint64{g2.Generation, 5, 6}; !slices.Equal(kept, want) {
		t.Fatalf("after clean-up kept %v (deleted %v), want %v", kept, cl.Deleted, want)
	}
}

func marshalApplied(t *testing.T, n *Node) *pb.ListAppliedResponse {
	t.Helper()
	r := &pb.ListAppliedResponse{}
	n.State(func(s *fsm.State) { r.Endpoints = s.AppliedAll() })
	return proto.Clone(r).(*pb.ListAppliedResponse)
}

// Bad input gets the contract's status code, stores nothing, and the node
// keeps serving.
func TestBadInput(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.startAll()
	l := c.leader()
	ctx := ctxT(t)
	a := c.api(c.follower().ID())
	waitFor(t, 10*time.Second, "leader address known", func() bool {
		_, err := a.plans.ListPlans(ctx, &pb.ListPlansRequest{})
		return err == nil
	})
	good, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 10, 10)})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := a.leases.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/0", Holder: "az-a", Ttl: ttl(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(*pb.Plan)) *pb.Plan {
		p := samplePlan("api.dnsplan.test.", 10, 10)
		f(p)
		return p
	}
	// Valid in every way but size: endpoints of 1,000 targets each.
	big := &pb.Plan{}
	for i := 0; proto.Size(big) <= contract.MaxPlanBytes; i++ {
		ep := &pb.EndpointPlan{Name: fmt.Sprintf("e%d.dnsplan.test.", i), Ttl: 30}
		for j := range contract.MaxTargetsPerEndpoint {
			ep.Targets = append(ep.Targets, &pb.Target{Id: fmt.Sprintf("t-%060d", j), Address: "192.0.2.1", Weight: 1})
		}
		big.Endpoints = append(big.Endpoints, ep)
	}
	plans := map[string]*pb.Plan{
		"no plan":          nil,
		"no endpoints":     {PlannerId: "x"},
		"empty targets":    mod(func(p *pb.Plan) { p.Endpoints[0].Targets = nil }),
		"relative name":    mod(func(p *pb.Plan) { p.Endpoints[0].Name = "api.dnsplan.test" }),
		"bad label":        mod(func(p *pb.Plan) { p.Endpoints[0].Name = "a..b." }),
		"bad address":      mod(func(p *pb.Plan) { p.Endpoints[0].Targets[0].Address = "300.1.1.1" }),
		"ttl zero":         mod(func(p *pb.Plan) { p.Endpoints[0].Ttl = 0 }),
		"ttl too big":      mod(func(p *pb.Plan) { p.Endpoints[0].Ttl = 86401 }),
		"all weights zero": mod(func(p *pb.Plan) { p.Endpoints[0].Targets[0].Weight, p.Endpoints[0].Targets[1].Weight = 0, 0 }),
		"duplicate target": mod(func(p *pb.Plan) { p.Endpoints[0].Targets[1].Id = p.Endpoints[0].Targets[0].Id }),
		"oversize":         big,
	}
	for name, p := range plans {
		_, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: p})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: submit = %v, want InvalidArgument", name, err)
		}
	}
	checks := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"unknown generation", func() error {
			_, err := a.plans.GetPlan(ctx, &pb.GetPlanRequest{Generation: 99})
			return err
		}, codes.NotFound},
		{"apply unknown generation", func() error {
			_, err := a.enact.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: 99, LeaseName: "enactor/0", LeaseToken: lease.Token, EnactorId: "az-a"})
			return err
		}, codes.NotFound},
		{"apply unknown endpoint", func() error {
			_, err := a.enact.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: good.Generation, Endpoints: []string{"nope.dnsplan.test."}, LeaseName: "enactor/0", LeaseToken: lease.Token, EnactorId: "az-a"})
			return err
		}, codes.NotFound},
		{"get unknown endpoint", func() error {
			_, err := a.enact.GetApplied(ctx, &pb.GetAppliedRequest{Endpoint: "nope.dnsplan.test."})
			return err
		}, codes.NotFound},
		{"renew by wrong holder", func() error {
			_, err := a.leases.RenewLease(ctx, &pb.RenewLeaseRequest{Name: "enactor/0", Holder: "az-b", Token: lease.Token})
			return err
		}, codes.FailedPrecondition},
		{"acquire with no ttl", func() error {
			_, err := a.leases.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "x", Holder: "y"})
			return err
		}, codes.InvalidArgument},
		{"apply without token", func() error {
			_, err := a.enact.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: good.Generation, LeaseName: "enactor/0", EnactorId: "az-a"})
			return err
		}, codes.InvalidArgument},
		{"cleanup keep 0", func() error {
			_, err := a.enact.CleanupPlans(ctx, &pb.CleanupPlansRequest{})
			return err
		}, codes.InvalidArgument},
	}
	for _, tc := range checks {
		if err := tc.call(); status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.want)
		}
	}
	var plansStored int
	var applied int
	l.State(func(s *fsm.State) { plansStored, applied = s.NumPlans(), s.NumApplied() })
	if plansStored != 1 || applied != 0 {
		t.Fatalf("bad input stored something: %d plans, %d applied", plansStored, applied)
	}
	// Still serving: a forced plan goes through.
	if _, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 1, 0), Force: true}); err != nil {
		t.Fatalf("forced submit after bad input: %v", err)
	}
}

// Freeze stops applies until unfreeze.
func TestFreeze(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	c.startAll()
	l := c.leader()
	ctx := ctxT(t)
	a := c.api(l.ID())
	g, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 1)})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := a.leases.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "e", Holder: "h", Ttl: ttl(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	apply := &pb.ApplyPlanRequest{Generation: g.Generation, LeaseName: "e", LeaseToken: lease.Token, EnactorId: "h"}
	if _, err := a.cluster.SetFreeze(ctx, &pb.SetFreezeRequest{Frozen: true, Reason: "incident"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.enact.ApplyPlan(ctx, apply); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("apply while frozen = %v, want FailedPrecondition", err)
	}
	if st, _ := a.cluster.Status(ctx, &pb.StatusRequest{}); !st.Frozen || st.FreezeReason != "incident" {
		t.Fatalf("status while frozen = %v", st)
	}
	if _, err := a.cluster.SetFreeze(ctx, &pb.SetFreezeRequest{Frozen: false}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.enact.ApplyPlan(ctx, apply); err != nil {
		t.Fatalf("apply after unfreeze: %v", err)
	}
}
