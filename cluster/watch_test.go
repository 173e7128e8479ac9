package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// bigPlan is a valid plan of endpoints × targets (about 30 bytes a
// target), every endpoint at the same weights so that velocity never
// refuses a repeat of it.
func bigPlan(endpoints, targets int) *pb.Plan {
	p := &pb.Plan{PlannerId: "test"}
	for e := range endpoints {
		ep := &pb.EndpointPlan{Name: fmt.Sprintf("e%d.dnsplan.test.", e), Ttl: 30}
		for i := range targets {
			ep.Targets = append(ep.Targets, &pb.Target{
				Id:      fmt.Sprintf("lb-%04d", i),
				Address: fmt.Sprintf("10.%d.%d.%d", e%256, i/256, i%256),
				Weight:  1,
			})
		}
		p.Endpoints = append(p.Endpoints, ep)
	}
	return p
}

// stalledWatcher is a client that opens watch streams and never reads
// them: a paused enactor, a SIGSTOPped process. Its receive window is the
// smallest gRPC allows (64 KiB), so the server's sends block on flow
// control after a few messages.
func stalledWatcher(t *testing.T, addr string) (cc *grpc.ClientConn, plans pb.PlanService_WatchPlansClient, applied pb.EnactService_WatchAppliedClient) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the cluster's own clean-up, so it runs first: a
	// closed connection releases whatever a stalled send still holds.
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	if plans, err = pb.NewPlanServiceClient(cc).WatchPlans(ctx, &pb.WatchPlansRequest{FromGeneration: 1}); err != nil {
		t.Fatal(err)
	}
	if applied, err = pb.NewEnactServiceClient(cc).WatchApplied(ctx, &pb.WatchAppliedRequest{}); err != nil {
		t.Fatal(err)
	}
	return cc, plans, applied
}

// within runs f with a context of the given bound, again while it fails
// with UNAVAILABLE (a leader election under way), and fails the test,
// naming what did not answer, if f has not succeeded within the bound.
func within(t *testing.T, bound time.Duration, what string, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	start := time.Now()
	for {
		err := f(ctx)
		if err == nil {
			return
		}
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			t.Fatalf("%s: no answer within %s (after %s): %v", what, bound, time.Since(start).Round(time.Millisecond), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Hole 1: a client that stops reading its watch streams must not stop the
// node. With a stalled plan and applied watcher on every node and a few MB
// of plans pending for them, every node keeps taking writes, serving
// linearizable reads and answering Status, and each stalled stream is
// ended by the server.
func TestStalledWatcherCannotStopNode(t *testing.T) {
	const sendTimeout = time.Second
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.WatchSendTimeout = sendTimeout })
	c.startAll()
	l := c.leader()
	a := c.api(l.ID())
	ctx := ctxT(t)
	lease, err := a.leases.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/0", Holder: "az-a", Ttl: ttl(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	plan := bigPlan(8, 1000) // about 240 KB
	submit := func(ctx context.Context) (uint64, error) {
		res, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan})
		return res.GetGeneration(), err
	}
	apply := func(ctx context.Context) error {
		gen, err := submit(ctx)
		if err != nil {
			return err
		}
		_, err = a.enact.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: gen, LeaseName: "enactor/0", LeaseToken: lease.Token, EnactorId: "az-a"})
		return err
	}
	// Applied records of about 240 KB, so a stalled WatchApplied blocks
	// on its first send. (The bounds below are generous: these are real
	// nodes applying large plans under the race detector on a busy
	// machine. Before the fix, the first write after the stall never
	// answers.)
	const writeBound, readBound = 10 * time.Second, 5 * time.Second
	within(t, writeBound, "first submit and apply", apply)
	waitFor(t, 10*time.Second, "every node applied the first plan", func() bool {
		for _, id := range c.order {
			var n int
			c.node(id).State(func(s *fsm.State) { n = s.NumApplied() })
			if n == 0 {
				return false
			}
		}
		return true
	})

	type stalled struct {
		node    string
		cc      *grpc.ClientConn
		plans   pb.PlanService_WatchPlansClient
		applied pb.EnactService_WatchAppliedClient
	}
	var watchers []stalled
	for _, id := range c.order {
		cc, p, ap := stalledWatcher(t, c.specs[id].grpcAddr)
		watchers = append(watchers, stalled{id, cc, p, ap})
	}

	// A few MB of plans pending for every stalled watcher, then one more
	// apply.
	const more = 8
	for i := range more - 1 {
		within(t, writeBound, fmt.Sprintf("submit %d of %d", i+1, more), func(ctx context.Context) error {
			_, err := submit(ctx)
			return err
		})
	}
	within(t, writeBound, fmt.Sprintf("submit %d of %d and apply it", more, more), apply)
	// Every node still answers everything, within a bound.
	for _, id := range c.order {
		n := c.api(id)
		within(t, readBound, "Status on "+id, func(ctx context.Context) error {
			_, err := n.cluster.Status(ctx, &pb.StatusRequest{})
			return err
		})
		within(t, readBound, "linearizable GetPlan through "+id, func(ctx context.Context) error {
			_, err := n.plans.GetPlan(ctx, &pb.GetPlanRequest{Newest: true})
			return err
		})
		within(t, readBound, "stale GetApplied on "+id, func(ctx context.Context) error {
			_, err := n.enact.GetApplied(ctx, &pb.GetAppliedRequest{Endpoint: "e0.dnsplan.test.", Stale: true})
			return err
		})
		within(t, writeBound, "write through "+id, func(ctx context.Context) error {
			_, err := n.leases.RenewLease(ctx, &pb.RenewLeaseRequest{Name: "enactor/0", Holder: "az-a", Token: lease.Token})
			return err
		})
	}

	// The server ended every stalled stream and closed the stalled
	// client's connection, which frees what the transport still held for
	// it (the message it could not send, and the status behind it).
	for _, w := range watchers {
		waitFor(t, 10*time.Second, w.node+" closing the stalled client's connection", func() bool {
			return w.cc.GetState() != connectivity.Ready
		})
		if n := counterValue(t, c.node(w.node), "dnsplan_watch_streams_ended_total"); n == 0 {
			t.Errorf("%s counted no watch stream it ended", w.node)
		}
	}
	// Once the client reads again it gets what was already in flight,
	// then UNAVAILABLE.
	for _, w := range watchers {
		got := 0
		var err error
		for err == nil {
			_, err = w.plans.Recv()
			got++
		}
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s: stalled plan watch ended with %v after %d messages, want UNAVAILABLE", w.node, err, got-1)
		}
		if got-1 >= 1+more {
			t.Errorf("%s: stalled plan watch delivered all %d plans; it was never ended", w.node, got-1)
		}
		err = nil
		for err == nil {
			_, err = w.applied.Recv()
		}
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s: stalled applied watch ended with %v, want UNAVAILABLE", w.node, err)
		}
	}
}

// The cap on watch streams per client: one more is refused with
// RESOURCE_EXHAUSTED and a reason the client reads, and a closed stream
// frees its place.
func TestWatchersPerClientCapped(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.MaxWatchersPerClient = 2 })
	c.startAll()
	l := c.leader()
	a := c.api(l.ID())
	ctx := ctxT(t)
	if _, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 5)}); err != nil {
		t.Fatal(err)
	}
	open := func(ctx context.Context) (pb.PlanService_WatchPlansClient, error) {
		s, err := a.plans.WatchPlans(ctx, &pb.WatchPlansRequest{FromGeneration: 1})
		if err != nil {
			return nil, err
		}
		_, err = s.Recv() // the first plan, or the refusal
		return s, err
	}
	first, cancelFirst := context.WithCancel(ctx)
	for range 2 {
		if _, err := open(first); err != nil {
			t.Fatalf("watch within the cap: %v", err)
		}
	}
	_, err := open(ctx)
	if status.Code(err) != codes.ResourceExhausted || client.Reason(err) != contract.ReasonWatchLimit || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("third watch from one client: %v, want RESOURCE_EXHAUSTED, reason watch_limit, naming the client", err)
	}
	cancelFirst()
	waitFor(t, 10*time.Second, "a place freed by closed streams", func() bool {
		_, err := open(ctx)
		return err == nil
	})
}

// Hole 3, the node's side: a watch served by a node that is cut off from
// the quorum ends with UNAVAILABLE naming why, within a few election
// timeouts, so its client resumes on a node that sees new plans.
func TestWatchOnCutOffNodeEnds(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.startAll()
	l := c.leader()
	f := c.follower()
	ctx := ctxT(t)
	if _, err := c.api(l.ID()).plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 5)}); err != nil {
		t.Fatal(err)
	}
	stream, err := c.api(f.ID()).plans.WatchPlans(ctx, &pb.WatchPlansRequest{FromGeneration: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	// Stopping both peers leaves f running, reachable, and with no leader.
	for _, id := range c.order {
		if id != f.ID() {
			c.stop(id)
		}
	}
	stopped := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := stream.Recv()
		done <- err
	}()
	select {
	case err := <-done:
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "out of touch") {
			t.Fatalf("watch on the cut-off node ended with %v, want UNAVAILABLE naming the reason", err)
		}
		t.Logf("ended %s after the cut: %v", time.Since(stopped).Round(time.Millisecond), err)
	case <-time.After(10 * time.Second):
		t.Fatal("the watch on a node without a leader was still open 10s later")
	}
}

// planNearLimit is a valid plan whose encoded content is within a few
// dozen bytes under contract.MaxPlanBytes.
func planNearLimit(t *testing.T) *pb.Plan {
	t.Helper()
	p := &pb.Plan{PlannerId: "test"}
	size := proto.Size(p)
	// field is the encoded size of an endpoint as a field of the plan.
	field := func(ep *pb.EndpointPlan) int { n := proto.Size(ep); return 1 + protowire.SizeVarint(uint64(n)) + n }
	for e := 0; ; e++ {
		ep := bigPlan(1, 1000).Endpoints[0]
		ep.Name = fmt.Sprintf("e%d.dnsplan.test.", e)
		if size+field(ep) > contract.MaxPlanBytes {
			break
		}
		p.Endpoints = append(p.Endpoints, ep)
		size += field(ep)
	}
	// Fill the rest with one more endpoint, a target at a time.
	last := &pb.EndpointPlan{Name: "last.dnsplan.test.", Ttl: 30}
	for i := 0; ; i++ {
		last.Targets = append(last.Targets, &pb.Target{Id: fmt.Sprintf("lb-%04d", i), Address: fmt.Sprintf("10.255.%d.%d", i/256, i%256), Weight: 1})
		if size+field(last) > contract.MaxPlanBytes {
			last.Targets = last.Targets[:len(last.Targets)-1]
			break
		}
	}
	p.Endpoints = append(p.Endpoints, last)
	// And the last bytes with the planner id.
	for proto.Size(&pb.Plan{PlannerId: p.PlannerId + "x", Endpoints: p.Endpoints}) <= contract.MaxPlanBytes && len(p.PlannerId) < contract.MaxIDLength {
		p.PlannerId += "x"
	}
	if n := proto.Size(&pb.Plan{PlannerId: p.PlannerId, Endpoints: p.Endpoints}); n > contract.MaxPlanBytes || n < contract.MaxPlanBytes-64 {
		t.Fatalf("test plan is %d bytes, want just under %d", n, contract.MaxPlanBytes)
	}
	if err := contract.ValidatePlan(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// Hole 8: a plan that validation accepts is one every part of the system
// can carry. A plan just under the limit is submitted through a follower,
// read with GetPlan through a follower (forwarded to the leader) and
// delivered by WatchPlans, all with the project's own client.
func TestPlanAtTheLimitTravelsEverywhere(t *testing.T) {
	// Raft's default timeouts: a 4 MiB entry takes longer than the test
	// harness's 250ms to reach and be applied by every node under the
	// race detector, which would only add elections to the test.
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = time.Second, time.Second, 500*time.Millisecond
	})
	c.startAll()
	f := c.follower()
	// A 4 MiB plan goes through validation twice, Raft and three state
	// machines under the race detector: give each call time (a call cut
	// short is retried, and two 4 MiB submissions then share the cores).
	cl, err := client.New([]string{c.specs[f.ID()].grpcAddr}, client.WithCallTimeout(2*time.Minute), client.WithRetryBudget(4*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	// The bound is for a broken run, not for speed: four such plans take
	// over a minute under the race detector on two busy cores.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	plan := planNearLimit(t)
	start := time.Now()
	res, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan})
	t.Logf("submit took %s", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("submit a plan just under the limit: %v", err)
	}
	got, err := cl.GetPlan(ctx, &pb.GetPlanRequest{Generation: res.Generation})
	if err != nil {
		t.Fatalf("GetPlan of a plan just under the limit: %v", err)
	}
	if got.GetGeneration() != res.Generation {
		t.Fatalf("GetPlan returned generation %d, want %d", got.GetGeneration(), res.Generation)
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	errDelivered := errors.New("delivered")
	err = cl.WatchPlans(wctx, 1, func(p *pb.Plan) error {
		if p.GetGeneration() == res.Generation {
			return errDelivered
		}
		return nil
	})
	if !errors.Is(err, errDelivered) {
		t.Fatalf("WatchPlans did not deliver the plan: %v", err)
	}

	// Four such plans are 16 MiB, over every message limit together:
	// ListPlans answers them in pages, each under the limit.
	gens := []uint64{res.Generation}
	for range 3 {
		r, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan})
		if err != nil {
			t.Fatalf("submit another plan just under the limit: %v", err)
		}
		gens = append(gens, r.Generation)
	}
	first, err := cl.ListPlans(ctx, &pb.ListPlansRequest{})
	if err != nil {
		t.Fatalf("ListPlans of %d plans of 4 MiB: %v", len(gens), err)
	}
	if first.GetNextGeneration() == 0 || len(first.GetPlans()) == len(gens) {
		t.Fatalf("ListPlans answered %d of %d plans of 4 MiB in one page (next generation %d)",
			len(first.GetPlans()), len(gens), first.GetNextGeneration())
	}
	all, err := cl.AllPlans(ctx, false)
	if err != nil {
		t.Fatalf("AllPlans: %v", err)
	}
	var listed []uint64
	for _, p := range all {
		listed = append(listed, p.GetGeneration())
	}
	// A submission whose answer was slow may have been retried and stored
	// twice (a duplicate plan is harmless): every stored generation, 1 to
	// the last one acknowledged, must be listed, once, in order.
	var want []uint64
	for g := uint64(1); g <= gens[len(gens)-1]; g++ {
		want = append(want, g)
	}
	if !slices.Equal(listed, want) {
		t.Fatalf("AllPlans returned generations %v, want %v (acknowledged %v)", listed, want, gens)
	}
}

// ListPlans and ListApplied page by the caller's limit too, and the
// client's AllPlans and AllApplied read every page.
func TestListsPage(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	c.startAll()
	a := c.api(c.leader().ID())
	cl, err := client.New([]string{c.specs[c.leader().ID()].grpcAddr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	ctx := ctxT(t)
	lease, err := a.leases.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/0", Holder: "az-a", Ttl: ttl(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var gens []uint64
	for _, name := range []string{"c.dnsplan.test.", "a.dnsplan.test.", "b.dnsplan.test."} {
		r, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan(name, 100)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.enact.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: r.Generation, LeaseName: "enactor/0", LeaseToken: lease.Token, EnactorId: "az-a"}); err != nil {
			t.Fatal(err)
		}
		gens = append(gens, r.Generation)
	}
	p, err := a.plans.ListPlans(ctx, &pb.ListPlansRequest{Limit: 2})
	if err != nil || len(p.GetPlans()) != 2 || p.GetNextGeneration() != gens[2] {
		t.Fatalf("ListPlans limit 2: %d plans, next %d, %v; want 2, next %d", len(p.GetPlans()), p.GetNextGeneration(), err, gens[2])
	}
	p, err = a.plans.ListPlans(ctx, &pb.ListPlansRequest{Limit: 2, FromGeneration: gens[2]})
	if err != nil || len(p.GetPlans()) != 1 || p.GetNextGeneration() != 0 {
		t.Fatalf("ListPlans from %d: %d plans, next %d, %v; want the last one and no next page", gens[2], len(p.GetPlans()), p.GetNextGeneration(), err)
	}
	e, err := a.enact.ListApplied(ctx, &pb.ListAppliedRequest{Limit: 1, FromEndpoint: "B.dnsplan.test"})
	if err != nil || len(e.GetEndpoints()) != 1 || e.GetEndpoints()[0].GetEndpoint() != "b.dnsplan.test." || e.GetNextEndpoint() != "c.dnsplan.test." {
		t.Fatalf("ListApplied limit 1 from B.dnsplan.test: %v, next %q, %v; want b. then c.", e.GetEndpoints(), e.GetNextEndpoint(), err)
	}
	applied, err := cl.AllApplied(ctx, false)
	if err != nil || len(applied) != 3 || applied[0].GetEndpoint() != "a.dnsplan.test." {
		t.Fatalf("AllApplied: %v, %v; want a., b., c.", applied, err)
	}
}
