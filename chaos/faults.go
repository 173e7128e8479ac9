package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"

	"google.golang.org/protobuf/proto"
)

// FaultKind names one kind of fault.
type FaultKind string

// The faults a run injects.
const (
	// KillLeader closes the node that leads (as a killed process: its
	// acknowledged writes are on disk) and starts it again, same ports
	// and data, after Fault.For.
	KillLeader FaultKind = "kill-leader"
	// KillFollower does the same to a node that does not lead.
	KillFollower FaultKind = "kill-follower"
	// FreezeEnactor holds every step and RPC of an enactor (its lease
	// renewals too) for Fault.For, well past its lease TTL, then lets it
	// carry on with what it was about to send.
	FreezeEnactor FaultKind = "freeze-enactor"
	// SlowEnactor makes an enactor pause Fault.Delay before each of its
	// writes, for Fault.For.
	SlowEnactor FaultKind = "slow-enactor"
	// Partition cuts a node's Raft links to both others for Fault.For.
	Partition FaultKind = "partition"
	// RestartCluster closes every node, waits Fault.For, and starts them
	// all again.
	RestartCluster FaultKind = "restart-cluster"
	// StallWatcher opens a bare WatchPlans and WatchApplied stream on a
	// node, from the first plan, with a small receive window, and does
	// not read them for Fault.For while plans keep coming; then it reads
	// again or (Fault.Die) drops its connection.
	StallWatcher FaultKind = "stall-watcher"
	// StallEnactor stops an enactor reading its plan watch for Fault.For
	// (its lease renewals and applies go on, as when the goroutine that
	// reads the stream is stuck); then it reads again or (Fault.Die) its
	// stream is dropped and the enactor's watch reconnects.
	StallEnactor FaultKind = "stall-enactor"
	// ReplaceNode closes a node, deletes its data, and after Fault.For
	// starts it again, empty, on the same addresses: it rejoins through a
	// member (Fault.Join, cluster.Config.Join) or from the founding list.
	ReplaceNode FaultKind = "replace-node"
	// AddNode starts a new, empty node that joins the cluster as a voter,
	// probed over DNS from its first second, and removes it after
	// Fault.For.
	AddNode FaultKind = "add-node"
	// ClockJump moves a node's clock by Fault.Jump at once; it stays
	// there (Fault.For is only the pause before the next fault).
	ClockJump FaultKind = "clock-jump"
	// PartitionWatch cuts the Raft links of the node that serves the
	// lease holder's plan watch, for Fault.For; the enactor stays
	// connected to it over gRPC.
	PartitionWatch FaultKind = "partition-watch"
	// DoubtfulPlan submits, as an operator and without force, a plan that
	// moves every padding endpoint to new addresses: what a planner
	// reading a broken source would send. The cluster must store it held
	// and freeze itself (freeze on doubt); the heal is the operator's
	// unfreeze after Fault.For. The held plan must never be applied (D1),
	// and every other invariant holds while the cluster is frozen.
	DoubtfulPlan FaultKind = "doubtful-plan"
)

// DefaultMix is the default fault mix: each kind with its weight.
var DefaultMix = map[FaultKind]int{
	KillLeader:     3,
	KillFollower:   2,
	FreezeEnactor:  3,
	SlowEnactor:    2,
	Partition:      2,
	RestartCluster: 1,
	StallWatcher:   2,
	StallEnactor:   2,
	ReplaceNode:    2,
	AddNode:        2,
	ClockJump:      2,
	PartitionWatch: 2,
	DoubtfulPlan:   1,
}

// FaultKinds lists every kind, in a fixed order.
var FaultKinds = []FaultKind{KillLeader, KillFollower, FreezeEnactor, SlowEnactor, Partition, RestartCluster,
	StallWatcher, StallEnactor, ReplaceNode, AddNode, ClockJump, PartitionWatch, DoubtfulPlan}

// ParseFaults reads a comma-separated list of fault kinds into a mix that
// weighs each as DefaultMix does; "" or "all" is DefaultMix.
func ParseFaults(s string) (map[FaultKind]int, error) {
	if s == "" || s == "all" {
		return DefaultMix, nil
	}
	mix := map[FaultKind]int{}
	for _, f := range strings.Split(s, ",") {
		k := FaultKind(strings.TrimSpace(f))
		w, ok := DefaultMix[k]
		if !ok {
			return nil, fmt.Errorf("chaos: unknown fault %q (known: %v)", k, FaultKinds)
		}
		mix[k] = w
	}
	return mix, nil
}

// Fault is one scheduled fault. Everything about it is drawn from the
// run's seed; which node leads when it starts is not, so a node fault
// names a role (leader, follower) and Pick chooses within it.
type Fault struct {
	Kind  FaultKind     `json:"kind"`
	At    time.Duration `json:"at"`              // when it starts, from the start of the run
	For   time.Duration `json:"for"`             // how long until it is healed
	Pick  int           `json:"pick"`            // which node or enactor, within its role
	Delay time.Duration `json:"delay,omitempty"` // SlowEnactor: the pause before each write
	Die   bool          `json:"die,omitempty"`   // StallWatcher, StallEnactor: dropped, not resumed
	Join  bool          `json:"join,omitempty"`  // ReplaceNode: rejoins through a member
	Jump  time.Duration `json:"jump,omitempty"`  // ClockJump: how far the clock moves
}

func (f Fault) String() string {
	s := fmt.Sprintf("%s at +%.1fs for %.1fs", f.Kind, f.At.Seconds(), f.For.Seconds())
	switch f.Kind {
	case SlowEnactor:
		s += fmt.Sprintf(" (%s per write)", f.Delay.Round(time.Millisecond))
	case StallWatcher, StallEnactor:
		s += map[bool]string{false: " (then reads again)", true: " (then dies)"}[f.Die]
	case ReplaceNode:
		s += map[bool]string{false: " (founding list)", true: " (joins)"}[f.Join]
	case ClockJump:
		s += fmt.Sprintf(" (by %s)", f.Jump)
	}
	return s
}

// Schedule timing: the first fault waits for the system to settle; each
// fault is healed before the next starts, after a pause; nothing is
// scheduled to be still under way in the run's last quietTail, which
// leaves room for the L2 bound (l2Bound) after the last heal.
const (
	warmup    = 1500 * time.Millisecond
	quietTail = 3500 * time.Millisecond
)

// schedule draws the run's faults from its seed: one at a time, a new one
// every one to three seconds or so, every one healed before the next and
// before the run ends; the first is a delayed enactor (freeze or slow)
// whenever the mix has one. The same seed, duration and mix always give the
// same schedule.
func schedule(seed uint64, duration, leaseTTL time.Duration, mix map[FaultKind]int) []Fault {
	rng := rand.New(rand.NewPCG(seed, 0xfa17))
	var kinds []FaultKind
	total := 0
	for _, k := range FaultKinds {
		if w := mix[k]; w > 0 {
			kinds = append(kinds, k)
			total += w
		}
	}
	if total == 0 {
		return nil
	}
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)) }
	// draw picks one of ks by the mix's weights.
	draw := func(ks []FaultKind) FaultKind {
		sum := 0
		for _, k := range ks {
			sum += mix[k]
		}
		n := rng.IntN(sum)
		for _, k := range ks {
			if n < mix[k] {
				return k
			}
			n -= mix[k]
		}
		panic("unreachable")
	}
	// The first fault is a delayed enactor when the mix has one: the
	// trigger of the outage this system exists to survive, so that every
	// run puts the design to that test; the rest come from the whole mix.
	var triggers []FaultKind
	for _, k := range kinds {
		if k == FreezeEnactor || k == SlowEnactor {
			triggers = append(triggers, k)
		}
	}
	var faults []Fault
	at := warmup
	for {
		kind := draw(kinds)
		if len(faults) == 0 && len(triggers) > 0 {
			kind = draw(triggers)
		}
		f := Fault{Kind: kind, At: at, Pick: rng.IntN(1 << 16)}
		switch kind {
		case KillLeader, KillFollower:
			f.For = between(500*time.Millisecond, 2*time.Second)
		case Partition:
			f.For = between(time.Second, 2500*time.Millisecond)
		case FreezeEnactor:
			f.For = between(2*leaseTTL, 9*leaseTTL/2)
		case SlowEnactor:
			f.For = between(2*time.Second, 4*time.Second)
			// Long enough that the other enactors write newer plans
			// meanwhile, short enough that the slow one's plan is not yet
			// cleaned up when it writes: the AWS window.
			f.Delay = between(300*time.Millisecond, 1200*time.Millisecond)
		case RestartCluster:
			f.For = between(200*time.Millisecond, time.Second)
		case StallWatcher, StallEnactor:
			// Several lease TTLs, long enough for the L2 bound to be
			// judged while it lasts.
			f.For = between(3*leaseTTL, 5*leaseTTL)
			f.Die = rng.IntN(2) == 0
		case ReplaceNode:
			f.For = between(500*time.Millisecond, 2*time.Second)
			f.Join = rng.IntN(2) == 0
		case AddNode:
			f.For = between(2*time.Second, 4*time.Second)
		case ClockJump:
			f.For = between(300*time.Millisecond, time.Second)
			f.Jump = clockOffset(rng)
			if f.Jump == 0 {
				f.Jump = time.Hour
			}
		case PartitionWatch:
			f.For = between(3*leaseTTL, 9*leaseTTL/2)
		case DoubtfulPlan:
			f.For = between(500*time.Millisecond, 2*time.Second)
		}
		if f.At+f.For > duration-quietTail {
			return faults
		}
		faults = append(faults, f)
		at = f.At + f.For + between(300*time.Millisecond, 1200*time.Millisecond)
	}
}

// injector runs a schedule against a run's cluster and enactors.
type injector struct {
	r *run
}

// run injects every fault at its time, healing each before the next, until
// the schedule is done or ctx ends; a fault under way when ctx ends is
// healed at once.
func (in injector) run(ctx context.Context, faults []Fault) error {
	for _, f := range faults {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(in.r.rec.start.Add(f.At))):
		}
		if ctx.Err() != nil {
			return nil // both were ready: never start a fault after the end
		}
		heal, err := in.inject(f)
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(f.For):
		}
		if err := heal(); err != nil {
			return err
		}
	}
	return nil
}

// inject starts one fault and returns what heals it.
func (in injector) inject(f Fault) (heal func() error, err error) {
	r := in.r
	c := r.cluster
	note := func(kind, actor, detail string) { r.rec.event(Event{Kind: kind, Actor: actor, Detail: detail}) }
	switch f.Kind {
	case KillLeader, KillFollower:
		i := in.pickNode(f.Kind == KillLeader, f.Pick)
		if i < 0 {
			note("fault-skipped", "", string(f.Kind)+": no running node")
			return func() error { return nil }, nil
		}
		note(string(f.Kind), c.ID(i), fmt.Sprintf("down for %s", f.For.Round(time.Millisecond)))
		c.StopNode(i)
		return func() error {
			err := c.StartNode(i)
			note("heal", c.ID(i), "restarted")
			return err
		}, nil
	case Partition:
		i := in.pickNode(f.Pick%2 == 0, f.Pick/2)
		if i < 0 {
			note("fault-skipped", "", string(f.Kind)+": no running node")
			return func() error { return nil }, nil
		}
		role := "follower"
		if c.Node(i) != nil && c.Node(i).IsLeader() {
			role = "leader"
		}
		note(string(f.Kind), c.ID(i), fmt.Sprintf("%s cut off from both others for %s", role, f.For.Round(time.Millisecond)))
		c.net.Isolate(i)
		return func() error {
			c.net.Heal()
			note("heal", c.ID(i), "links restored")
			return nil
		}, nil
	case FreezeEnactor:
		a := in.pickEnactor(f.Pick)
		// Frozen at its next write if it makes one within a second (the
		// dangerous moment: decided, not yet sent), else where it is.
		engaged := make(chan struct{})
		a.freeze.Store(&engaged)
		where := "at a write"
		select {
		case <-engaged:
		case <-time.After(time.Second):
			if a.freeze.CompareAndSwap(&engaged, nil) {
				a.e.Pause()
				where = "idle"
			} else {
				<-engaged
			}
		}
		note(string(f.Kind), a.id, fmt.Sprintf("frozen %s for %s (lease TTL %s), holding %v", where, f.For.Round(time.Millisecond), r.leaseTTL, a.e.Leases()))
		return func() error {
			a.e.Resume()
			note("heal", a.id, "woken")
			return nil
		}, nil
	case SlowEnactor:
		a := in.pickEnactor(f.Pick)
		note(string(f.Kind), a.id, fmt.Sprintf("%s before each write for %s", f.Delay.Round(time.Millisecond), f.For.Round(time.Millisecond)))
		a.slow.Store(int64(f.Delay))
		return func() error {
			a.slow.Store(0)
			note("heal", a.id, "full speed")
			return nil
		}, nil
	case StallWatcher:
		return in.stallWatcher(f)
	case StallEnactor:
		// Half the time the lease holder: the one whose watch matters.
		a := in.pickEnactor(f.Pick)
		if f.Pick%2 == 0 {
			a = in.holder()
		}
		note(string(f.Kind), a.id, fmt.Sprintf("stops reading its plan watch (on %s) for %s, holding %v", in.nodeOf(a.watch.watchAddr()), f.For.Round(time.Millisecond), a.e.Leases()))
		a.watch.stall()
		return func() error {
			a.watch.resume(f.Die)
			note("heal", a.id, map[bool]string{false: "reads its plan watch again", true: "plan watch dropped (dies)"}[f.Die])
			return nil
		}, nil
	case ReplaceNode:
		return in.replaceNode(f)
	case AddNode:
		return in.addNode(f)
	case ClockJump:
		i := in.pickNode(f.Pick%2 == 0, f.Pick/2)
		if i < 0 {
			note("fault-skipped", "", string(f.Kind)+": no running node")
			return func() error { return nil }, nil
		}
		off := time.Duration(c.clock[i].Add(int64(f.Jump)))
		note(string(f.Kind), c.ID(i), fmt.Sprintf("clock jumps by %s (now %s off)", f.Jump, off))
		return func() error { return nil }, nil
	case PartitionWatch:
		a := in.holder()
		addr := a.watch.watchAddr()
		i := slices.Index(c.GRPCAddrs(), addr)
		if i < 0 || c.Node(i) == nil {
			note("fault-skipped", a.id, string(f.Kind)+": its plan watch is on no running node")
			return func() error { return nil }, nil
		}
		note(string(f.Kind), c.ID(i), fmt.Sprintf("serves the plan watch of %s (holding %v); cut off from every other node for %s", a.id, a.e.Leases(), f.For.Round(time.Millisecond)))
		c.net.Isolate(i)
		return func() error {
			c.net.Heal()
			note("heal", c.ID(i), "links restored")
			return nil
		}, nil
	case DoubtfulPlan:
		return in.doubtfulPlan(f)
	case RestartCluster:
		note(string(f.Kind), "", fmt.Sprintf("every node down for %s", f.For.Round(time.Millisecond)))
		c.StopAll()
		return func() error {
			err := c.StartAll()
			note("heal", "", "every node restarted")
			return err
		}, nil
	}
	return nil, fmt.Errorf("chaos: unknown fault %q", f.Kind)
}

// clockOffset draws a clock offset: none a third of the time, else
// minutes or hours ahead or behind.
func clockOffset(rng *rand.Rand) time.Duration {
	var d time.Duration
	switch rng.IntN(3) {
	case 0:
		return 0
	case 1:
		d = time.Duration(1+rng.IntN(59)) * time.Minute
	default:
		d = time.Duration(1+rng.IntN(6)) * time.Hour
	}
	if rng.IntN(2) == 0 {
		d = -d
	}
	return d
}

// clockOffsets draws the founding nodes' clock offsets from the seed.
func clockOffsets(seed uint64) []time.Duration {
	rng := rand.New(rand.NewPCG(seed, 0xc10c))
	offsets := make([]time.Duration, clusterSize)
	for i := range offsets {
		offsets[i] = clockOffset(rng)
	}
	return offsets
}

// pickNode chooses a running node: the leader if leader is set and one is
// known, else a follower; pick (from the seed) chooses among candidates.
func (in injector) pickNode(leader bool, pick int) int {
	c := in.r.cluster
	lead := c.Leader()
	if leader && lead >= 0 {
		return lead
	}
	var candidates []int
	for i := range c.Slots() {
		if c.Node(i) != nil && i != lead {
			candidates = append(candidates, i)
		}
	}
	if len(candidates) == 0 {
		return lead
	}
	return candidates[pick%len(candidates)]
}

// holder is the enactor that holds a lease (the fixed design), else the
// active one.
func (in injector) holder() *actor {
	for _, a := range in.r.enactors {
		if len(a.e.Leases()) > 0 {
			return a
		}
	}
	return in.pickEnactor(0)
}

// nodeOf names the node at a gRPC address.
func (in injector) nodeOf(addr string) string {
	c := in.r.cluster
	if i := slices.Index(c.GRPCAddrs(), addr); i >= 0 {
		return c.ID(i)
	}
	return "no node"
}

// stallWatcher opens a bare watcher on a node and leaves it unread.
func (in injector) stallWatcher(f Fault) (func() error, error) {
	r, c := in.r, in.r.cluster
	i := in.pickNode(f.Pick%2 == 0, f.Pick/2)
	if i < 0 {
		r.rec.event(Event{Kind: "fault-skipped", Detail: string(f.Kind) + ": no running node"})
		return func() error { return nil }, nil
	}
	tlsCfg, err := c.ClientTLS(asWatcher)
	if err != nil {
		return nil, err
	}
	w, err := openBareWatcher(c.Addrs(i).GRPC, tlsCfg)
	if err != nil {
		r.rec.event(Event{Kind: "fault-skipped", Actor: c.ID(i), Detail: fmt.Sprintf("%s: %v", f.Kind, err)})
		return func() error { return nil }, nil
	}
	r.mu.Lock()
	r.stalls = append(r.stalls, w)
	r.mu.Unlock()
	r.rec.event(Event{Kind: string(f.Kind), Actor: c.ID(i), Detail: fmt.Sprintf("a watcher of plans and applied records, from the start, stops reading for %s", f.For.Round(time.Millisecond))})
	return func() error {
		if f.Die {
			w.close()
			r.rec.event(Event{Kind: "heal", Actor: c.ID(i), Detail: "the stalled watcher dies"})
		} else {
			w.resume()
			r.rec.event(Event{Kind: "heal", Actor: c.ID(i), Detail: "the stalled watcher reads again"})
		}
		return nil
	}, nil
}

// replaceNode closes a node and deletes its data; the heal starts it again,
// empty, on the same addresses.
func (in injector) replaceNode(f Fault) (func() error, error) {
	r, c := in.r, in.r.cluster
	i := in.pickNode(f.Pick%2 == 0, f.Pick/2)
	if i < 0 {
		r.rec.event(Event{Kind: "fault-skipped", Detail: string(f.Kind) + ": no running node"})
		return func() error { return nil }, nil
	}
	c.StopNode(i)
	if err := c.Wipe(i); err != nil {
		return nil, err
	}
	via := ""
	if f.Join {
		for j := range c.Slots() {
			if j != i && c.Node(j) != nil {
				via = c.Addrs(j).GRPC
				break
			}
		}
	}
	c.SetJoin(i, via)
	how := "from the founding list"
	if via != "" {
		how = "joining through " + in.nodeOf(via)
	}
	r.rec.event(Event{Kind: string(f.Kind), Actor: c.ID(i), Detail: fmt.Sprintf("data deleted; back, empty, %s, in %s", how, f.For.Round(time.Millisecond))})
	return func() error {
		r.dns.started(c.ID(i))
		err := c.StartNode(i)
		r.rec.event(Event{Kind: "heal", Actor: c.ID(i), Detail: "started with no data"})
		return err
	}, nil
}

// addNode starts a new, empty node that joins through a member, probed
// from its start; the heal removes it from the cluster and stops it.
func (in injector) addNode(f Fault) (func() error, error) {
	r, c := in.r, in.r.cluster
	via := ""
	for j := range c.Slots() {
		if c.IsMember(j) && c.Node(j) != nil {
			via = c.Addrs(j).GRPC
			break
		}
	}
	k := -1
	var err error
	if via != "" {
		k, err = c.reserve()
	}
	if k < 0 {
		r.rec.event(Event{Kind: "fault-skipped", Detail: fmt.Sprintf("%s: no member to join through, or no slot (%v)", f.Kind, err)})
		return func() error { return nil }, nil
	}
	c.SetJoin(k, via)
	c.SetMember(k, true)
	stopProbe, err := r.probeNode(k)
	if err != nil {
		return nil, err
	}
	r.rec.event(Event{Kind: string(f.Kind), Actor: c.ID(k), Detail: fmt.Sprintf("new node joins through %s, probed from its start, removed after %s", in.nodeOf(via), f.For.Round(time.Millisecond))})
	r.dns.started(c.ID(k))
	if err := c.StartNode(k); err != nil {
		stopProbe()
		return nil, err
	}
	return func() error {
		c.SetMember(k, false)
		err := r.removeNode(k)
		c.StopNode(k)
		stopProbe()
		if err != nil {
			r.rec.event(Event{Kind: "heal", Actor: c.ID(k), Detail: "stopped; removing it failed: " + err.Error()})
			return nil // the final readiness check reports a cluster that did not recover
		}
		r.rec.event(Event{Kind: "heal", Actor: c.ID(k), Detail: "removed and stopped"})
		return nil
	}, nil
}

// pickEnactor chooses an enactor: half the time (by pick, from the seed)
// the active one, the one that last set out to write (in the fixed design
// the lease holder; in the legacy design the one winning the race to each
// new plan), whose freezing or slowing is what matters; otherwise any.
func (in injector) pickEnactor(pick int) *actor {
	enactors := in.r.enactors
	if pick%2 == 0 {
		active := enactors[0]
		for _, a := range enactors[1:] {
			if a.lastWrite.Load() > active.lastWrite.Load() {
				active = a
			}
		}
		return active
	}
	return enactors[(pick/2)%len(enactors)]
}

// faultEvents keeps the faults and their healing from a timeline, for the
// visualization's annotations.
func faultEvents(events []Event) []Event {
	return slices.DeleteFunc(slices.Clone(events), func(e Event) bool {
		_, fault := DefaultMix[FaultKind(e.Kind)]
		return !fault && e.Kind != "heal"
	})
}

// doubtfulPlan submits the newest plan with every padding endpoint moved
// to new addresses, as the operator and unforced, and records its
// generation as held when the cluster answers that it froze on it. The
// heal unfreezes, as an operator who reviewed it would (the held plan
// stays held: a newer plan of the planner's replaces it).
func (in injector) doubtfulPlan(f Fault) (func() error, error) {
	r := in.r
	note := func(kind, detail string) { r.rec.event(Event{Kind: kind, Actor: asOperator.Name, Detail: detail}) }
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	newest, err := r.adminClient.GetPlan(ctx, &pb.GetPlanRequest{Newest: true})
	if err != nil {
		note("fault-skipped", string(f.Kind)+": the newest plan could not be read: "+err.Error())
		return func() error { return nil }, nil
	}
	bad := &pb.Plan{PlannerId: "broken-source"}
	moved := 0
	for _, ep := range newest.GetEndpoints() {
		ep = proto.CloneOf(ep)
		if strings.HasPrefix(ep.GetName(), "pad-") {
			for i, t := range ep.GetTargets() {
				t.Address = fmt.Sprintf("203.0.113.%d", i%250+1)
			}
			moved++
		}
		bad.Endpoints = append(bad.Endpoints, ep)
	}
	resp, err := r.adminClient.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: bad})
	switch {
	case err != nil:
		note("fault-skipped", fmt.Sprintf("%s: the plan moving %d of %d endpoints was refused: %v", f.Kind, moved, len(bad.Endpoints), err))
		return func() error { return nil }, nil
	case !resp.GetFrozen():
		// Fewer endpoints served than the rule needs to doubt (early in a
		// run, or after a restore): the plan is an ordinary one.
		note("fault-skipped", fmt.Sprintf("%s: generation %d (moving %d of %d endpoints) stored without a freeze", f.Kind, resp.GetGeneration(), moved, len(bad.Endpoints)))
		return func() error { return nil }, nil
	}
	r.holdGeneration(resp.GetGeneration())
	note(string(f.Kind), fmt.Sprintf("generation %d moves %d of %d endpoints: held, the cluster froze (%s); unfrozen in %s",
		resp.GetGeneration(), moved, len(bad.Endpoints), resp.GetFreezeReason(), f.For.Round(time.Millisecond)))
	return func() error {
		// The unfreeze must land: a leader change may refuse it for a
		// moment, so it is tried until a deadline.
		deadline := time.Now().Add(15 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_, err := r.adminClient.SetFreeze(ctx, &pb.SetFreezeRequest{Frozen: false, Reason: "reviewed: the held plan stays held"})
			cancel()
			if err == nil {
				note("heal", "unfrozen")
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("chaos: unfreezing after %s: %w", f.Kind, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}, nil
}
