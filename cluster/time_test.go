package cluster

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/dnsplan/dnsplan/cluster/fsm"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// skewedClocks gives every node of a test cluster a wall clock with an
// offset the test can change while the node runs.
type skewedClocks map[string]*atomic.Int64

func newSkewedClocks(ids ...string) skewedClocks {
	s := skewedClocks{}
	for _, id := range ids {
		s[id] = &atomic.Int64{}
	}
	return s
}

func (s skewedClocks) tune(cfg *Config) {
	off := s[cfg.ID]
	cfg.Clock = func() time.Time { return time.Now().Add(time.Duration(off.Load())) }
}

// transferTo moves leadership to id and waits until it leads, ready.
func (c *testCluster) transferTo(id string) {
	c.t.Helper()
	resp, err := c.api(id).cluster.TransferLeadership(ctxT(c.t), &pb.TransferLeadershipRequest{Id: id})
	if err != nil {
		c.t.Fatalf("transfer leadership to %s: %v", id, err)
	}
	if resp.LeaderId != id {
		c.t.Fatalf("transfer reported leader %q, want %q", resp.LeaderId, id)
	}
	if l := c.leader(); l.ID() != id {
		c.t.Fatalf("leader is %s, want %s", l.ID(), id)
	}
}

// waitAddresses waits until every member's gRPC address is recorded, so
// requests to any node can be forwarded to the leader.
func (c *testCluster) waitAddresses() {
	c.t.Helper()
	waitFor(c.t, 10*time.Second, "every member's gRPC address recorded", func() bool {
		st, err := c.leader().Status()
		if err != nil {
			return false
		}
		for _, m := range st.Members {
			if m.GrpcAddr == "" {
				return false
			}
		}
		return len(st.Members) == len(c.order)
	})
}

// stateTime is a node's state-machine time.
func stateTime(n *Node) time.Time {
	var now time.Time
	n.State(func(s *fsm.State) { now = s.Now() })
	return now
}

// A leader whose wall clock runs a year ahead leads for a while, then a
// leader with a correct clock takes over: a lease with a TTL of one second,
// not renewed, is free for another holder within a few seconds, and the
// state's time never ran more than MaxTimeStep ahead of the world, before
// or after a restart of the whole cluster.
func TestClockAheadLeaderCannotFreezeLeases(t *testing.T) {
	clocks := newSkewedClocks("n1", "n2", "n3")
	c := newTestCluster(t, 3, clocks.tune)
	c.startAll()
	correct := c.leader().ID()
	c.waitAddresses()
	ahead := c.follower().ID()
	clocks[ahead].Store(int64(365 * 24 * time.Hour))
	c.transferTo(ahead)

	ctx := ctxT(t)
	a := c.api(ahead)
	for _, name := range []string{"enactor/0", "enactor/1"} {
		if _, err := a.leases.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: name, Holder: "az-a", Ttl: ttl(time.Hour)}); err != nil {
			t.Fatalf("acquire %s under the leader a year ahead: %v", name, err)
		}
	}
	if _, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 10)}); err != nil {
		t.Fatal(err)
	}

	// The leader shows its skew, and every replica counted the jump of
	// MaxTimeStep the leader's first stamp of its term made.
	if skew := time.Duration(c.node(ahead).skew.Load()); skew < 365*24*time.Hour-fsm.MaxTimeStep-time.Minute {
		t.Fatalf("the leader a year ahead reports a skew of %v", skew)
	}
	for _, id := range c.order {
		waitFor(t, 5*time.Second, id+" counts the time jump", func() bool {
			return counterValue(t, c.node(id), "dnsplan_fsm_time_jumps_total") >= 1
		})
	}

	c.transferTo(correct)
	b := c.api(correct)
	if _, err := b.leases.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/2", Holder: "az-a", Ttl: ttl(time.Second)}); err != nil {
		t.Fatalf("acquire under the correct leader: %v", err)
	}
	// freeFor waits until holder acquires the lease another holder took
	// with a TTL of one second and never renewed.
	freeFor := func(holder, what string) {
		t.Helper()
		var lastErr error
		defer func() {
			if t.Failed() {
				t.Logf("last refusal: %v", lastErr)
			}
		}()
		waitFor(t, 5*time.Second, what, func() bool {
			_, lastErr = b.leases.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/2", Holder: holder, Ttl: ttl(time.Second)})
			return lastErr == nil
		})
	}
	freeFor("az-b", "a lease with TTL 1s, not renewed, free for another holder")

	bound := func(when string) {
		t.Helper()
		for _, id := range c.order {
			if d := stateTime(c.node(id)).Sub(time.Now()); d > fsm.MaxTimeStep+time.Minute {
				t.Fatalf("%s: %s's state time runs %v ahead of the world", when, id, d)
			}
		}
	}
	bound("after the leader a year ahead")

	// The clock is fixed and the cluster restarted: the ready leader has
	// applied the whole log, and time goes on from where it was.
	clocks[ahead].Store(0)
	before := stateTime(c.leader())
	c.closeAll()
	c.startAll()
	l := c.leader()
	if now := stateTime(l); now.Before(before) {
		t.Fatalf("state time went back across a restart: %v, was %v", now, before)
	}
	b = c.api(l.ID())
	freeFor("az-a", "after a restart, az-b's lease free for az-a")
	freeFor("az-b", "after a restart, az-a's lease free for az-b")
	bound("after a restart")
}
