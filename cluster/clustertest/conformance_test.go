package clustertest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// The conformance suite: one set of behaviours of the contract, through
// the real gRPC API of a real three-node cluster, run on each store. A
// behaviour that holds on Raft and not on etcd (or the reverse) is a bug of
// the store, since the rules are one implementation (cluster/fsm). The
// cases share one cluster per store, each on endpoints and leases of its
// own, in order; the etcd outage cases come last.

// snapshotEvery is the suite's snapshot threshold, in entries.
const snapshotEvery = 16

// stores are the logs the suite runs on.
var stores = []cluster.Store{cluster.StoreRaft, cluster.StoreEtcd}

func TestConformance(t *testing.T) {
	for _, store := range stores {
		t.Run(string(store), func(t *testing.T) {
			c := clustertest.Start(t, clustertest.Options{Store: store, DNS: true, Tune: func(cfg *cluster.Config) {
				// Snapshots and compaction within the suite: a node
				// restarted below catches up from a snapshot.
				cfg.SnapshotThreshold, cfg.SnapshotInterval, cfg.TrailingLogs = snapshotEvery, 200*time.Millisecond, 4
			}})
			s := &suite{c: c, cl: c.Client()}
			cases := []struct {
				name string
				run  func(*suite, *testing.T)
			}{
				{"PlansAndStatusCodes", (*suite).plansAndStatusCodes},
				{"Fencing", (*suite).fencing},
				{"Stale", (*suite).stale},
				{"CleanupKeepsApplied", (*suite).cleanupKeepsApplied},
				{"Freeze", (*suite).freeze},
				{"Velocity", (*suite).velocity},
				{"WatchesInOrderAndResume", (*suite).watches},
				{"LinearizableReadOnAnotherNode", (*suite).linearizableElsewhere},
				{"TransferLeader", (*suite).transferLeader},
				{"ReadBackReportsFreezeOnAMajority", (*suite).readBackReports},
				{"RemoveServer", (*suite).removeServer},
				{"RestartCatchesUpFromSnapshot", (*suite).restartFromSnapshot},
			}
			if store == cluster.StoreEtcd {
				cases = append(cases, []struct {
					name string
					run  func(*suite, *testing.T)
				}{
					{"WipedNodeNeverAnswersEmpty", (*suite).wipedNodeNeverAnswersEmpty},
					{"EtcdMemberKilled", (*suite).etcdMemberKilled},
					{"EtcdOutage", (*suite).etcdOutage},
				}...)
			}
			for _, tc := range cases {
				if !t.Run(tc.name, func(t *testing.T) { tc.run(s, t) }) {
					return
				}
			}
		})
	}
}

type suite struct {
	c  *clustertest.Cluster
	cl *client.Client
}

// nodeClient is a client of node i alone, so that a call is served there
// (on Raft, forwarded from there to the leader).
func (s *suite) nodeClient(t *testing.T, i int, opts ...client.Option) *client.Client {
	t.Helper()
	cl, err := client.New([]string{s.c.GRPCAddrs[i]}, append([]client.Option{client.WithLogger(s.c.Log)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// plan is a plan of one endpoint with a target of weight 100 per address.
func plan(endpoint string, addrs ...string) *pb.Plan {
	ep := &pb.EndpointPlan{Name: endpoint, Ttl: 30}
	for i, a := range addrs {
		ep.Targets = append(ep.Targets, &pb.Target{Id: fmt.Sprintf("lb-%d", i+1), Address: a, Weight: 100})
	}
	return &pb.Plan{PlannerId: "conformance", Endpoints: []*pb.EndpointPlan{ep}}
}

func (s *suite) submit(t *testing.T, p *pb.Plan) uint64 {
	t.Helper()
	resp, err := s.cl.SubmitPlan(clustertest.Ctx(t), &pb.SubmitPlanRequest{Plan: p})
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return resp.GetGeneration()
}

func (s *suite) acquire(t *testing.T, name, holder string, ttl time.Duration) *pb.Lease {
	t.Helper()
	l, err := s.cl.AcquireLease(clustertest.Ctx(t), &pb.AcquireLeaseRequest{Name: name, Holder: holder, Ttl: durationpb.New(ttl)})
	if err != nil {
		t.Fatalf("acquire %s as %s: %v", name, holder, err)
	}
	return l
}

func (s *suite) apply(l *pb.Lease, gen uint64, endpoints ...string) (*pb.ApplyPlanResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.LongWait)
	defer cancel()
	return s.cl.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: gen, Endpoints: endpoints, LeaseName: l.GetName(), LeaseToken: l.GetToken(), EnactorId: l.GetHolder()})
}

// mustApply applies gen and requires every endpoint APPLIED.
func (s *suite) mustApply(t *testing.T, l *pb.Lease, gen uint64) {
	t.Helper()
	res, err := s.apply(l, gen)
	if err != nil {
		t.Fatalf("apply %d: %v", gen, err)
	}
	for _, r := range res.GetResults() {
		if r.GetOutcome() != pb.Outcome_OUTCOME_APPLIED {
			t.Fatalf("apply %d: %s is %s, want APPLIED", gen, r.GetEndpoint(), r.GetOutcome())
		}
	}
}

// wantCode fails t unless err has code and, if reason is set, reason.
func wantCode(t *testing.T, what string, err error, code codes.Code, reason contract.Reason) {
	t.Helper()
	if status.Code(err) != code || (reason != "" && client.Reason(err) != reason) {
		t.Fatalf("%s: %v (reason %q), want %s / %s", what, err, client.Reason(err), code, reason)
	}
}

func (s *suite) plansAndStatusCodes(t *testing.T) {
	ctx := clustertest.Ctx(t)
	_, err := s.cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: &pb.Plan{PlannerId: "conformance"}})
	wantCode(t, "an empty plan", err, codes.InvalidArgument, contract.ReasonInvalid)

	g1 := s.submit(t, plan("plans.dnsplan.test.", "192.0.2.1"))
	g2 := s.submit(t, plan("plans.dnsplan.test.", "192.0.2.1", "192.0.2.2"))
	if g2 <= g1 {
		t.Fatalf("generations %d then %d, want increasing", g1, g2)
	}
	got, err := s.cl.GetPlan(ctx, &pb.GetPlanRequest{Generation: g2})
	if err != nil || got.GetGeneration() != g2 || len(got.GetEndpoints()[0].GetTargets()) != 2 {
		t.Fatalf("GetPlan(%d): %v %v", g2, got, err)
	}
	_, err = s.cl.GetPlan(ctx, &pb.GetPlanRequest{Generation: g2 + 1000})
	wantCode(t, "GetPlan of an unknown generation", err, codes.NotFound, "")
	list, err := s.cl.ListPlans(ctx, &pb.ListPlansRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var gens []uint64
	for _, p := range list.GetPlans() {
		gens = append(gens, p.GetGeneration())
	}
	if !slices.Contains(gens, g1) || !slices.Contains(gens, g2) || !slices.IsSorted(gens) {
		t.Fatalf("ListPlans: generations %v, want %d and %d in order", gens, g1, g2)
	}
	_, err = s.cl.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: g2, LeaseName: "enactor/plans", LeaseToken: 1, EnactorId: "nobody"})
	wantCode(t, "apply without the lease", err, codes.FailedPrecondition, contract.ReasonFenced)
}

func (s *suite) fencing(t *testing.T) {
	const ep = "fencing.dnsplan.test."
	g1 := s.submit(t, plan(ep, "192.0.2.10"))
	a := s.acquire(t, "enactor/fencing", "az-a", 200*time.Millisecond)
	s.mustApply(t, a, g1)
	_, err := s.cl.AcquireLease(clustertest.Ctx(t), &pb.AcquireLeaseRequest{Name: "enactor/fencing", Holder: "az-b", Ttl: durationpb.New(time.Minute)})
	wantCode(t, "acquiring a held lease", err, codes.FailedPrecondition, contract.ReasonLeaseHeld)
	// Once the lease expired, another holder takes it over; the first
	// holder's token is refused from then on.
	var b *pb.Lease
	clustertest.WaitFor(t, clustertest.LongWait, "the lease to expire and be taken over", func() bool {
		l, err := s.cl.AcquireLease(clustertest.Ctx(t), &pb.AcquireLeaseRequest{Name: "enactor/fencing", Holder: "az-b", Ttl: durationpb.New(time.Minute)})
		b = l
		return err == nil
	})
	if b.GetToken() <= a.GetToken() {
		t.Fatalf("token %d after %d, want increasing", b.GetToken(), a.GetToken())
	}
	g2 := s.submit(t, plan(ep, "192.0.2.10", "192.0.2.11"))
	_, err = s.apply(a, g2)
	wantCode(t, "apply with a superseded token", err, codes.FailedPrecondition, contract.ReasonFenced)
	_, err = s.cl.RenewLease(clustertest.Ctx(t), &pb.RenewLeaseRequest{Name: "enactor/fencing", Holder: "az-a", Token: a.GetToken()})
	wantCode(t, "renew with a superseded token", err, codes.FailedPrecondition, contract.ReasonFenced)
	s.mustApply(t, b, g2)
	ap, err := s.cl.GetApplied(clustertest.Ctx(t), &pb.GetAppliedRequest{Endpoint: ep})
	if err != nil || ap.GetGeneration() != g2 || ap.GetLeaseToken() != b.GetToken() {
		t.Fatalf("GetApplied: %v %v, want generation %d under token %d", ap, err, g2, b.GetToken())
	}
}

func (s *suite) stale(t *testing.T) {
	const ep = "stale.dnsplan.test."
	g1 := s.submit(t, plan(ep, "192.0.2.20"))
	g2 := s.submit(t, plan(ep, "192.0.2.20", "192.0.2.21"))
	l := s.acquire(t, "enactor/stale", "az-a", time.Minute)
	s.mustApply(t, l, g2)
	res, err := s.apply(l, g1)
	if err != nil || len(res.GetResults()) != 1 || res.GetResults()[0].GetOutcome() != pb.Outcome_OUTCOME_STALE || res.GetResults()[0].GetAppliedGeneration() != g2 {
		t.Fatalf("apply of an older generation: %v %v, want STALE at %d", res, err, g2)
	}
	ap, err := s.cl.GetApplied(clustertest.Ctx(t), &pb.GetAppliedRequest{Endpoint: ep})
	if err != nil || ap.GetGeneration() != g2 {
		t.Fatalf("GetApplied after a stale apply: %v %v, want %d", ap, err, g2)
	}
}

func (s *suite) cleanupKeepsApplied(t *testing.T) {
	const ep = "cleanup.dnsplan.test."
	live := s.submit(t, plan(ep, "192.0.2.30"))
	l := s.acquire(t, "enactor/cleanup", "az-a", time.Minute)
	s.mustApply(t, l, live)
	var newest uint64
	for i := range 3 {
		newest = s.submit(t, plan(ep, "192.0.2.30", fmt.Sprintf("192.0.2.%d", 31+i)))
	}
	resp, err := s.cl.CleanupPlans(clustertest.Ctx(t), &pb.CleanupPlansRequest{KeepLast: 1})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(resp.GetDeleted(), live) || slices.Contains(resp.GetDeleted(), newest) {
		t.Fatalf("clean-up deleted %v: the applied plan %d or the newest %d among them", resp.GetDeleted(), live, newest)
	}
	if len(resp.GetDeleted()) == 0 {
		t.Fatalf("clean-up deleted nothing, want the plans neither applied nor newest")
	}
	if _, err := s.cl.GetPlan(clustertest.Ctx(t), &pb.GetPlanRequest{Generation: live}); err != nil {
		t.Fatalf("the applied plan %d after clean-up: %v", live, err)
	}
	_, err = s.cl.GetPlan(clustertest.Ctx(t), &pb.GetPlanRequest{Generation: resp.GetDeleted()[0]})
	wantCode(t, "a deleted plan", err, codes.NotFound, "")
	ap, err := s.cl.GetApplied(clustertest.Ctx(t), &pb.GetAppliedRequest{Endpoint: ep})
	if err != nil || ap.GetGeneration() != live || len(ap.GetTargets()) != 1 {
		t.Fatalf("GetApplied after clean-up: %v %v", ap, err)
	}
}

func (s *suite) freeze(t *testing.T) {
	const ep = "freeze.dnsplan.test."
	g := s.submit(t, plan(ep, "192.0.2.40"))
	l := s.acquire(t, "enactor/freeze", "az-a", time.Minute)
	ctx := clustertest.Ctx(t)
	if _, err := s.cl.SetFreeze(ctx, &pb.SetFreezeRequest{Frozen: true, Reason: "conformance"}); err != nil {
		t.Fatal(err)
	}
	_, err := s.apply(l, g)
	wantCode(t, "apply while frozen", err, codes.FailedPrecondition, contract.ReasonFrozen)
	if _, err := s.cl.SetFreeze(ctx, &pb.SetFreezeRequest{Frozen: false}); err != nil {
		t.Fatal(err)
	}
	s.mustApply(t, l, g)
}

func (s *suite) velocity(t *testing.T) {
	const ep = "velocity.dnsplan.test."
	g := s.submit(t, plan(ep, "192.0.2.50", "192.0.2.51", "192.0.2.52", "192.0.2.53"))
	l := s.acquire(t, "enactor/velocity", "az-a", time.Minute)
	s.mustApply(t, l, g)
	ctx := clustertest.Ctx(t)
	_, err := s.cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan(ep, "192.0.2.50")})
	wantCode(t, "a plan removing 75% of the capacity", err, codes.FailedPrecondition, contract.ReasonVelocity)
	forced, err := s.cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan(ep, "192.0.2.50"), Force: true})
	if err != nil {
		t.Fatalf("the same plan forced: %v", err)
	}
	s.mustApply(t, l, forced.GetGeneration())
}

// watches: WatchPlans delivers stored plans in generation order and then
// new ones; a watch that ends resumes on another node from the last
// generation plus one, with nothing missed and nothing twice.
func (s *suite) watches(t *testing.T) {
	const ep = "watch.dnsplan.test."
	from := s.submit(t, plan(ep, "192.0.2.60"))
	var want []uint64
	want = append(want, from)
	for i := range 3 {
		want = append(want, s.submit(t, plan(ep, "192.0.2.60", fmt.Sprintf("192.0.2.%d", 61+i))))
	}
	var got []uint64
	watchOn := func(node int, from uint64, n int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), clustertest.LongWait)
		defer cancel()
		enough := errors.New("enough")
		err := s.nodeClient(t, node).WatchPlans(ctx, from, func(p *pb.Plan) error {
			got = append(got, p.GetGeneration())
			if n--; n == 0 {
				return enough
			}
			return nil
		})
		if !errors.Is(err, enough) {
			t.Fatalf("watch on node %d: %v", node, err)
		}
	}
	watchOn(0, from, 2)
	// Resume on another node, with new plans submitted meanwhile.
	for i := range 2 {
		want = append(want, s.submit(t, plan(ep, "192.0.2.60", fmt.Sprintf("192.0.2.%d", 70+i))))
	}
	watchOn(1, got[len(got)-1]+1, len(want)-len(got))
	if !slices.Equal(got, want) {
		t.Fatalf("watched generations %v, want %v", got, want)
	}

	// WatchApplied resumes from a revision the same way.
	l := s.acquire(t, "enactor/watch", "az-a", time.Minute)
	s.mustApply(t, l, want[len(want)-1])
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.LongWait)
	defer cancel()
	found := errors.New("found")
	err := s.nodeClient(t, 2).WatchApplied(ctx, 0, func(a *pb.AppliedEndpoint) error {
		if a.GetEndpoint() == ep && a.GetGeneration() == want[len(want)-1] {
			return found
		}
		return nil
	})
	if !errors.Is(err, found) {
		t.Fatalf("WatchApplied on node 3: %v, want %s at %d", err, ep, want[len(want)-1])
	}
}

// linearizableElsewhere: a write acknowledged through node A is read at
// once through node B, every time (on Raft B forwards the read to the
// leader; on etcd B waits for its replica to reach the log's head).
func (s *suite) linearizableElsewhere(t *testing.T) {
	const ep = "linear.dnsplan.test."
	l := s.acquire(t, "enactor/linear", "az-a", time.Minute)
	for i := range 30 {
		a, b := i%3, (i+1)%3
		ca, cb := s.nodeClient(t, a), s.nodeClient(t, b)
		ctx := clustertest.Ctx(t)
		sub, err := ca.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan(ep, "192.0.2.80", fmt.Sprintf("192.0.2.%d", 100+i))})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cb.GetPlan(ctx, &pb.GetPlanRequest{Generation: sub.GetGeneration()}); err != nil {
			t.Fatalf("round %d: plan %d written through node %d, read through node %d: %v", i, sub.GetGeneration(), a+1, b+1, err)
		}
		res, err := ca.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: sub.GetGeneration(), LeaseName: l.GetName(), LeaseToken: l.GetToken(), EnactorId: l.GetHolder()})
		if err != nil || res.GetResults()[0].GetOutcome() != pb.Outcome_OUTCOME_APPLIED {
			t.Fatalf("round %d: apply through node %d: %v %v", i, a+1, res, err)
		}
		ap, err := cb.GetApplied(ctx, &pb.GetAppliedRequest{Endpoint: ep})
		if err != nil || ap.GetGeneration() != sub.GetGeneration() {
			t.Fatalf("round %d: applied %d through node %d, node %d reads %v %v", i, sub.GetGeneration(), a+1, b+1, ap.GetGeneration(), err)
		}
	}
}

// transferLeader: on Raft the leader hands over; on etcd there is no
// dnsplan leader and the call is FAILED_PRECONDITION.
func (s *suite) transferLeader(t *testing.T) {
	_, err := s.cl.TransferLeadership(clustertest.Ctx(t), &pb.TransferLeadershipRequest{})
	if s.c.Store() == cluster.StoreEtcd {
		wantCode(t, "transfer-leader on etcd", err, codes.FailedPrecondition, "")
		return
	}
	if err != nil {
		t.Fatalf("transfer-leader: %v", err)
	}
	s.c.WaitReady()
}

// readBackReports: an enactor's report that two of three members do
// not serve what it applied freezes the cluster (max_read_back_failures
// 0.5); one of three does not. On etcd the nodes record themselves in the
// state's members, against which reports are judged.
func (s *suite) readBackReports(t *testing.T) {
	l := s.acquire(t, "enactor/doubt", "az-doubt", time.Minute)
	report := func(nodes ...string) *pb.ReportDoubtResponse {
		t.Helper()
		r, err := s.cl.ReportDoubt(clustertest.Ctx(t), &pb.ReportDoubtRequest{Kind: pb.DoubtKind_DOUBT_KIND_READ_BACK, Generation: 1,
			LeaseName: l.GetName(), LeaseToken: l.GetToken(), EnactorId: l.GetHolder(), Nodes: nodes})
		if err != nil {
			t.Fatalf("report of doubt: %v", err)
		}
		return r
	}
	clustertest.WaitFor(t, clustertest.LongWait, "a report naming 2 of 3 members to freeze the cluster", func() bool {
		return report(s.c.IDs[1], s.c.IDs[2]).GetFrozen()
	})
	if _, err := s.cl.SetFreeze(clustertest.Ctx(t), &pb.SetFreezeRequest{Frozen: false}); err != nil {
		t.Fatal(err)
	}
	if r := report(s.c.IDs[2]); r.GetFrozen() {
		t.Fatalf("a report naming 1 of 3 members froze the cluster: %v", r)
	}
	if _, err := s.cl.SetFreeze(clustertest.Ctx(t), &pb.SetFreezeRequest{Frozen: false}); err != nil {
		t.Fatal(err)
	}
}

// removeServer: a member no one knows is NOT_FOUND on both stores. On
// etcd the members are the registry: a node that died leaves its key
// behind for one TTL, and RemoveServer removes it at once; a node still
// running registers again (cluster/DESIGN.md, "Membership").
func (s *suite) removeServer(t *testing.T) {
	_, err := s.cl.RemoveServer(clustertest.Ctx(t), &pb.RemoveServerRequest{Id: "nobody"})
	wantCode(t, "remove-server of an unknown member", err, codes.NotFound, "")
	if s.c.Store() != cluster.StoreEtcd {
		return // Raft's RemoveServer shrinks the configuration: cluster_test.go
	}
	// What a node that died leaves behind: its key, on a lease an hour
	// long that no one keeps alive.
	cli := s.c.Etcd.Client(t)
	ctx := clustertest.Ctx(t)
	g, err := cli.Grant(ctx, 3600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/dnsplan/members/n9", `{"grpc_addr":"127.0.0.1:1"}`, clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	members := func() []string {
		st, err := s.nodeClient(t, 0).Status(clustertest.Ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range st.GetMembers() {
			ids = append(ids, m.GetId())
		}
		return ids
	}
	clustertest.WaitFor(t, clustertest.LongWait, "n9 registered", func() bool { return slices.Contains(members(), "n9") })
	if _, err := s.nodeClient(t, 1).RemoveServer(ctx, &pb.RemoveServerRequest{Id: "n9"}); err != nil {
		t.Fatalf("remove-server n9: %v", err)
	}
	resp, err := cli.Get(ctx, "/dnsplan/members/n9")
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("n9's key after remove-server: %v %v", resp, err)
	}
	clustertest.WaitFor(t, clustertest.LongWait, "n9 gone from Status", func() bool { return !slices.Contains(members(), "n9") })
	// A running node registers again.
	if _, err := s.cl.RemoveServer(ctx, &pb.RemoveServerRequest{Id: "n3"}); err != nil {
		t.Fatalf("remove-server n3: %v", err)
	}
	clustertest.WaitFor(t, clustertest.LongWait, "n3 registered again", func() bool { return slices.Contains(members(), "n3") })
}

// restartFromSnapshot: a node stopped while the others write more than
// a snapshot's worth of entries, and the log is compacted behind them,
// comes back by restoring a snapshot (on Raft, the leader sends it; on
// etcd, the node reads the newest from etcd, the entries it lacks being
// gone) and then serves what was written, through the API and DNS.
func (s *suite) restartFromSnapshot(t *testing.T) {
	const ep = "restart.dnsplan.test."
	s.c.Stop(2)
	l := s.acquire(t, "enactor/restart", "az-a", time.Minute)
	var gen uint64
	for i := range 2 * snapshotEvery {
		gen = s.submit(t, plan(ep, "192.0.2.140", fmt.Sprintf("192.0.2.%d", 141+i%50)))
	}
	s.mustApply(t, l, gen)
	if s.c.Store() == cluster.StoreEtcd {
		// The log's first entry is compacted away: node 3 cannot replay it.
		first := "/dnsplan/log/" + fmt.Sprintf("%020d", 1)
		cli := s.c.Etcd.Client(t)
		clustertest.WaitFor(t, clustertest.LongWait, "the etcd log compacted", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			resp, err := cli.Get(ctx, first, clientv3.WithCountOnly())
			return err == nil && resp.Count == 0
		})
	}
	n := s.c.Restart(2)
	if n == nil {
		t.Fatal("node 3 did not restart")
	}
	ap, err := s.nodeClient(t, 2).GetApplied(clustertest.Ctx(t), &pb.GetAppliedRequest{Endpoint: ep})
	if err != nil || ap.GetGeneration() != gen {
		t.Fatalf("linearizable read through the restarted node: %v %v, want generation %d", ap, err, gen)
	}
	clustertest.WaitFor(t, clustertest.LongWait, "the restarted node's DNS serving the newest plan", func() bool {
		return len(aRecords(t, s.c.DNSAddrs[2], ep)) == 2
	})
	if st, err := n.Status(); err != nil || st.GetLastSnapshotIndex() == 0 {
		t.Fatalf("the restarted node's status: %v %v, want a snapshot restored", st, err)
	}
	s.c.WaitReady()
}

// wipedNodeNeverAnswersEmpty (I2): a node started with an empty data dir
// while etcd is down cannot learn how far the cluster got, so its DNS
// answers SERVFAIL, never NXDOMAIN or an empty answer, for as long as the
// outage lasts; once etcd returns, it serves the applied records.
func (s *suite) wipedNodeNeverAnswersEmpty(t *testing.T) {
	const ep = "wiped.dnsplan.test."
	g := s.submit(t, plan(ep, "192.0.2.150", "192.0.2.151"))
	s.mustApply(t, s.acquire(t, "enactor/wiped", "az-a", time.Minute), g)
	s.c.Stop(2)
	s.c.Wipe(2)
	s.c.Etcd.StopAll()
	if s.c.Restart(2) == nil {
		t.Fatal("node 3 did not start")
	}
	// answer is one DNS answer of node 3 for ep: "servfail", "full", or
	// what else it was.
	answer := func() string {
		m := new(dns.Msg)
		m.SetQuestion(ep, dns.TypeA)
		r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, s.c.DNSAddrs[2])
		switch {
		case err != nil:
			return "no answer: " + err.Error()
		case r.Rcode == dns.RcodeServerFailure:
			return "servfail"
		case r.Rcode == dns.RcodeSuccess && len(r.Answer) == 2:
			return "full"
		}
		return fmt.Sprintf("%s with %d records", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if a := answer(); a != "servfail" {
			t.Fatalf("a wiped node with etcd down answered %s, want SERVFAIL", a)
		}
	}
	s.c.Etcd.StartAll()
	clustertest.WaitFor(t, clustertest.LongWait, "the wiped node serving the applied records", func() bool {
		switch a := answer(); a {
		case "full":
			return true
		case "servfail":
			return false
		default:
			t.Fatalf("a wiped node catching up answered %s, want SERVFAIL or the records", a)
			return false
		}
	})
	s.c.WaitReady()
}

// etcdMemberKilled: with one etcd member killed, every node goes on
// writing and serving linearizable reads.
func (s *suite) etcdMemberKilled(t *testing.T) {
	const ep = "etcdkill.dnsplan.test."
	s.c.Etcd.Kill(0)
	defer s.c.Etcd.Restart(0)
	l := s.acquire(t, "enactor/etcdkill", "az-a", time.Minute)
	for i := range 3 {
		cl := s.nodeClient(t, i)
		ctx := clustertest.Ctx(t)
		sub, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan(ep, "192.0.2.90", fmt.Sprintf("192.0.2.%d", 91+i))})
		if err != nil {
			t.Fatalf("submit through node %d with an etcd member down: %v", i+1, err)
		}
		res, err := cl.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: sub.GetGeneration(), LeaseName: l.GetName(), LeaseToken: l.GetToken(), EnactorId: l.GetHolder()})
		if err != nil || res.GetResults()[0].GetOutcome() != pb.Outcome_OUTCOME_APPLIED {
			t.Fatalf("apply through node %d with an etcd member down: %v %v", i+1, res, err)
		}
		ap, err := s.nodeClient(t, (i+1)%3).GetApplied(ctx, &pb.GetAppliedRequest{Endpoint: ep})
		if err != nil || ap.GetGeneration() != sub.GetGeneration() {
			t.Fatalf("linearizable read through node %d: %v %v", (i+1)%3+1, ap, err)
		}
	}
}

// etcdOutage: with every etcd member down, writes and linearizable reads
// answer UNAVAILABLE, while stale reads and DNS keep answering the last
// applied state; when etcd returns, everything resumes by itself.
func (s *suite) etcdOutage(t *testing.T) {
	const ep = "outage.dnsplan.test."
	g := s.submit(t, plan(ep, "192.0.2.110", "192.0.2.111"))
	l := s.acquire(t, "enactor/outage", "az-a", time.Minute)
	s.mustApply(t, l, g)
	// Every node's DNS serves it before the outage.
	for i := range 3 {
		clustertest.WaitFor(t, clustertest.LongWait, "DNS serving the plan", func() bool {
			return len(aRecords(t, s.c.DNSAddrs[i], ep)) == 2
		})
	}

	// A watch of the plans to come, through the project's client, runs
	// across the outage and resumes after it.
	watched := make(chan uint64, 16)
	wctx, wcancel := context.WithCancel(context.Background())
	wdone := make(chan error, 1)
	go func() {
		wdone <- s.c.Client().WatchPlans(wctx, g+1, func(p *pb.Plan) error {
			watched <- p.GetGeneration()
			return nil
		})
	}()
	defer func() {
		wcancel()
		<-wdone
	}()

	s.c.Etcd.StopAll()
	// Plain gRPC, no retries: the code is each node's own answer.
	for i := range 3 {
		conn, err := grpc.NewClient(s.c.GRPCAddrs[i], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		plans, enact := pb.NewPlanServiceClient(conn), pb.NewEnactServiceClient(conn)
		ctx, cancel := context.WithTimeout(context.Background(), clustertest.LongWait)
		defer cancel()
		_, err = plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan(ep, "192.0.2.110", "192.0.2.111", "192.0.2.112")})
		wantCode(t, fmt.Sprintf("submit through node %d with etcd down", i+1), err, codes.Unavailable, "")
		_, err = enact.GetApplied(ctx, &pb.GetAppliedRequest{Endpoint: ep})
		wantCode(t, fmt.Sprintf("linearizable read through node %d with etcd down", i+1), err, codes.Unavailable, "")
		ap, err := enact.GetApplied(ctx, &pb.GetAppliedRequest{Endpoint: ep, Stale: true})
		if err != nil || ap.GetGeneration() != g {
			t.Fatalf("stale read through node %d with etcd down: %v %v, want generation %d", i+1, ap, err, g)
		}
		if got := aRecords(t, s.c.DNSAddrs[i], ep); len(got) != 2 {
			t.Fatalf("DNS of node %d with etcd down: %v, want the 2 applied addresses", i+1, got)
		}
	}

	s.c.Etcd.StartAll()
	// Everything resumes: a write through every node, read back through
	// another, and served by DNS.
	clustertest.WaitFor(t, clustertest.LongWait, "every node ready again", func() bool {
		for i := range 3 {
			st, err := s.c.Node(i).Status()
			if err != nil || st.GetState() != cluster.EtcdReady {
				return false
			}
		}
		return true
	})
	for i := range 3 {
		cl := s.nodeClient(t, i)
		ctx := clustertest.Ctx(t)
		sub, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan(ep, "192.0.2.110", "192.0.2.111", fmt.Sprintf("192.0.2.%d", 120+i))})
		if err != nil {
			t.Fatalf("submit through node %d after etcd returned: %v", i+1, err)
		}
		res, err := cl.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: sub.GetGeneration(), LeaseName: l.GetName(), LeaseToken: l.GetToken(), EnactorId: l.GetHolder()})
		if err != nil || res.GetResults()[0].GetOutcome() != pb.Outcome_OUTCOME_APPLIED {
			t.Fatalf("apply through node %d after etcd returned: %v %v", i+1, res, err)
		}
		select {
		case w := <-watched:
			if w != sub.GetGeneration() {
				t.Fatalf("the watch resumed with generation %d, want %d", w, sub.GetGeneration())
			}
		case <-time.After(clustertest.LongWait):
			t.Fatalf("the watch did not deliver generation %d after etcd returned", sub.GetGeneration())
		}
	}
	for i := range 3 {
		clustertest.WaitFor(t, clustertest.LongWait, "DNS serving the plan applied after the outage", func() bool {
			return len(aRecords(t, s.c.DNSAddrs[i], ep)) == 3
		})
	}
}

// aRecords asks the DNS server at addr for name's A records.
func aRecords(t *testing.T, addr, name string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	c := &dns.Client{Timeout: time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil || r.Rcode != dns.RcodeSuccess {
		return nil
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

// TestEtcdStampsFollowTheNewestTime holds the etcd store to its time rule
// (cluster/DESIGN.md, "Time"): every node stamps its own proposals, and a
// node's line never stays behind the state's time. Node 1's wall clock is
// 50 seconds ahead (below fsm.TimeJumpThreshold, so no jump is reported):
// restarted, it bases its line that far ahead of the state and its next
// proposal moves the cluster's time by as much. Node 3, whose line was
// based before, must then stamp from the state's time, or time would stand
// still for 50 seconds while only node 3 proposes and no lease would
// expire (L2). A lease node 3 grants must also not be expired at once by a
// proposal through node 1.
func TestEtcdStampsFollowTheNewestTime(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Store: cluster.StoreEtcd, Tune: func(cfg *cluster.Config) {
		if cfg.ID == "n1" {
			cfg.Clock = func() time.Time { return time.Now().Add(50 * time.Second) }
		}
	}})
	s := &suite{c: c, cl: c.Client()}
	c.Stop(0)
	c.Restart(0)
	c.WaitReady()
	n1, n3 := s.nodeClient(t, 0), s.nodeClient(t, 2)
	ctx := clustertest.Ctx(t)
	if _, err := n1.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan("time.dnsplan.test.", "192.0.2.130")}); err != nil {
		t.Fatal(err)
	}
	a, err := n3.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "time", Holder: "a", Ttl: durationpb.New(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = n1.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "time", Holder: "b", Ttl: durationpb.New(time.Second)})
	wantCode(t, "taking over a lease granted a moment before, through the node whose clock is ahead", err, codes.FailedPrecondition, contract.ReasonLeaseHeld)
	// Only node 3 proposes from here: the lease expires about a second
	// after it was granted.
	granted := time.Now()
	var b *pb.Lease
	clustertest.WaitFor(t, 15*time.Second, "the lease to expire with only node 3 proposing", func() bool {
		b, err = n3.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "time", Holder: "b", Ttl: durationpb.New(time.Second)})
		return err == nil
	})
	if waited := time.Since(granted); waited > 5*time.Second {
		t.Fatalf("a lease of 1s expired %v after it was granted, with only node 3 proposing", waited)
	}
	if b.GetToken() <= a.GetToken() {
		t.Fatalf("token %d after %d", b.GetToken(), a.GetToken())
	}
}

// TestEtcdIdleStretchMovesTimeOnce: when every node was idle for longer
// than fsm.MaxTimeStep, the first proposal moves the state's time by one
// step (a lease of before the stretch is expired, as it should be) and
// every other node re-bases its line on that entry's time (rule 2's
// second half in cluster/DESIGN.md, "Time"): a lease granted through one
// node right after the stretch is still held when another node proposes.
// Without the re-base, the second node's line, as far ahead as the
// stretch, would move time on by the stretch's excess over the step and
// expire that lease at once. The stretch is every node's clocks moved
// forward together (Config.Clock and Config.Monotonic), not waited for.
func TestEtcdIdleStretchMovesTimeOnce(t *testing.T) {
	var idle atomic.Int64 // the idle stretch the nodes' clocks have seen
	c := clustertest.Start(t, clustertest.Options{Store: cluster.StoreEtcd, Tune: func(cfg *cluster.Config) {
		cfg.Clock = func() time.Time { return time.Now().Add(time.Duration(idle.Load())) }
		cfg.Monotonic = cfg.Clock
	}})
	s := &suite{c: c, cl: c.Client()}
	n1, n3 := s.nodeClient(t, 0), s.nodeClient(t, 2)
	ctx := clustertest.Ctx(t)
	before, err := n1.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "before", Holder: "a", Ttl: durationpb.New(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	// Node 3 has proposed since it became ready: its line is in use.
	if _, err := n3.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "warm", Holder: "a", Ttl: durationpb.New(time.Minute)}); err != nil {
		t.Fatal(err)
	}

	idle.Store(int64(fsm.MaxTimeStep + 2*time.Minute))
	fresh, err := n1.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "fresh", Holder: "a", Ttl: durationpb.New(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	// The grants' times, from their expiry less their TTL.
	moved := fresh.GetExpiresAt().AsTime().Add(-10 * time.Second).Sub(before.GetExpiresAt().AsTime().Add(-time.Minute))
	if moved < fsm.MaxTimeStep || moved > fsm.MaxTimeStep+30*time.Second {
		t.Fatalf("the first proposal after the stretch moved time by %v, want one step (%v)", moved, fsm.MaxTimeStep)
	}
	// Node 3 has applied that entry (a linearizable read), then proposes.
	if _, err := n3.ListLeases(ctx, &pb.ListLeasesRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err = n3.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "fresh", Holder: "b", Ttl: durationpb.New(10 * time.Second)})
	wantCode(t, "taking over a lease granted through another node just after an idle stretch", err, codes.FailedPrecondition, contract.ReasonLeaseHeld)
	// The lease of before the stretch is expired.
	if _, err := n3.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "before", Holder: "b", Ttl: durationpb.New(time.Minute)}); err != nil {
		t.Fatalf("the lease of before the idle stretch is still held: %v", err)
	}
}
