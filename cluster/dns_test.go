package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/internal/dnswatch"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// dnsFixture is a 3-node cluster with DNS on every node, a lease, and a
// helper to submit and apply plans through a follower.
type dnsFixture struct {
	t     testing.TB
	c     *testCluster
	a     api
	lease *pb.Lease
}

func newDNSFixture(t testing.TB) *dnsFixture {
	c := newTestCluster(t, 3, nil).withDNS()
	c.startAll()
	c.leader()
	a := c.api(c.follower().ID())
	ctx := ctxT(t)
	var lease *pb.Lease
	waitFor(t, 10*time.Second, "a lease", func() bool {
		var err error
		lease, err = a.leases.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/0", Holder: "az-a", Ttl: ttl(time.Hour)})
		return err == nil
	})
	return &dnsFixture{t: t, c: c, a: a, lease: lease}
}

// apply submits (forced, so tests may change weights freely) and applies a
// plan, returning its generation once acknowledged.
func (f *dnsFixture) apply(plan *pb.Plan) uint64 {
	f.t.Helper()
	ctx := ctxT(f.t)
	r, err := f.a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan, Force: true})
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.a.enact.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: r.Generation, LeaseName: "enactor/0", LeaseToken: f.lease.Token, EnactorId: "az-a"}); err != nil {
		f.t.Fatal(err)
	}
	return r.Generation
}

func (f *dnsFixture) dnsAddrs() []string {
	var out []string
	for _, id := range f.c.order {
		out = append(out, f.c.specs[id].dnsAddr)
	}
	return out
}

func query(t testing.TB, netw, addr, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: netw, Timeout: 3 * time.Second}
	var r *dns.Msg
	var err error
	for range 5 {
		if r, _, err = c.Exchange(m, addr); err == nil {
			return r
		}
	}
	t.Fatalf("%s query %s %s to %s: %v", netw, name, dns.TypeToString[qtype], addr, err)
	return nil
}

// waitServed waits until every node answers name with generation gen in
// its debugging TXT record.
func (f *dnsFixture) waitServed(name string, gen uint64) {
	f.t.Helper()
	for _, addr := range f.dnsAddrs() {
		waitFor(f.t, 10*time.Second, fmt.Sprintf("%s serving generation %d of %s", addr, gen, name), func() bool {
			r := query(f.t, "udp", addr, "_dnsplan."+name, dns.TypeTXT, 0)
			for _, rr := range r.Answer {
				if txt, ok := rr.(*dns.TXT); ok && slices.ContainsFunc(txt.Txt, func(s string) bool {
					return strings.HasPrefix(s, fmt.Sprintf("generation=%d ", gen))
				}) {
					return true
				}
			}
			return false
		})
	}
}

// Every node answers A and AAAA from its replica with the plan's TTL, leaves
// weight-0 targets out, and follows the zone rules.
func TestDNSAnswersOnEveryNode(t *testing.T) {
	f := newDNSFixture(t)
	plan := &pb.Plan{PlannerId: "t", Endpoints: []*pb.EndpointPlan{{
		Name: "api.dnsplan.test.", Ttl: 42,
		Targets: []*pb.Target{
			{Id: "a", Address: "192.0.2.1", Weight: 10},
			{Id: "b", Address: "192.0.2.2", Weight: 0},
			{Id: "c", Address: "2001:db8::1", Weight: 5},
		},
	}, {
		Name: "v4.eu.dnsplan.test.", Ttl: 30,
		Targets: []*pb.Target{{Id: "a", Address: "192.0.2.9", Weight: 1}},
	}}}
	gen := f.apply(plan)
	f.waitServed("api.dnsplan.test.", gen)
	for _, addr := range f.dnsAddrs() {
		for _, netw := range []string{"udp", "tcp"} {
			r := query(t, netw, addr, "API.dnsplan.test.", dns.TypeA, 0)
			if r.Rcode != dns.RcodeSuccess || !r.Authoritative || r.RecursionAvailable {
				t.Fatalf("%s %s A: rcode %s aa=%v ra=%v", addr, netw, dns.RcodeToString[r.Rcode], r.Authoritative, r.RecursionAvailable)
			}
			if got := dnswatch.Addresses(r); !slices.Equal(got, []string{"192.0.2.1"}) {
				t.Fatalf("%s %s A = %v, want only the weighted IPv4 target", addr, netw, got)
			}
			if r.Answer[0].Header().Ttl != 42 {
				t.Fatalf("TTL = %d, want the plan's 42", r.Answer[0].Header().Ttl)
			}
		}
		if got := dnswatch.Addresses(query(t, "udp", addr, "api.dnsplan.test.", dns.TypeAAAA, 0)); !slices.Equal(got, []string{"2001:db8::1"}) {
			t.Fatalf("AAAA = %v", got)
		}
		cases := []struct {
			name   string
			qtype  uint16
			rcode  int
			answer bool
			soa    bool // SOA expected in the authority section
		}{
			{"nope.dnsplan.test.", dns.TypeA, dns.RcodeNameError, false, true},
			{"api.dnsplan.test.", dns.TypeMX, dns.RcodeSuccess, false, true},     // NODATA: other type
			{"eu.dnsplan.test.", dns.TypeA, dns.RcodeSuccess, false, true},       // NODATA: empty non-terminal
			{"v4.eu.dnsplan.test.", dns.TypeAAAA, dns.RcodeSuccess, false, true}, // NODATA: only IPv4
			{"example.com.", dns.TypeA, dns.RcodeRefused, false, false},
			{"dnsplan.test.", dns.TypeSOA, dns.RcodeSuccess, true, false},
			{"dnsplan.test.", dns.TypeNS, dns.RcodeSuccess, true, false},
		}
		for _, tc := range cases {
			r := query(t, "udp", addr, tc.name, tc.qtype, 0)
			hasSOA := len(r.Ns) > 0 && r.Ns[0].Header().Rrtype == dns.TypeSOA
			if r.Rcode != tc.rcode || (len(r.Answer) > 0) != tc.answer || hasSOA != tc.soa {
				t.Errorf("%s %s %s: rcode %s, %d answers, SOA in authority %v", addr, tc.name, dns.TypeToString[tc.qtype],
					dns.RcodeToString[r.Rcode], len(r.Answer), hasSOA)
			}
		}
	}
}

func soaSerial(t *testing.T, addr string) uint32 {
	r := query(t, "udp", addr, "dnsplan.test.", dns.TypeSOA, 0)
	if len(r.Answer) != 1 {
		t.Fatalf("SOA answer %v", r.Answer)
	}
	return r.Answer[0].(*dns.SOA).Serial
}

// The SOA serial grows whenever a record of the zone changes.
func TestDNSSOASerialGrows(t *testing.T) {
	f := newDNSFixture(t)
	g1 := f.apply(samplePlan("api.dnsplan.test.", 1, 1))
	f.waitServed("api.dnsplan.test.", g1)
	before := map[string]uint32{}
	for _, addr := range f.dnsAddrs() {
		before[addr] = soaSerial(t, addr)
	}
	g2 := f.apply(samplePlan("api.dnsplan.test.", 1, 2))
	f.waitServed("api.dnsplan.test.", g2)
	for _, addr := range f.dnsAddrs() {
		if after := soaSerial(t, addr); after <= before[addr] {
			t.Fatalf("%s serial %d -> %d after a change", addr, before[addr], after)
		}
	}
}

// A record set too large for UDP is truncated (TC) and answered whole over
// TCP.
func TestDNSTruncationAndTCP(t *testing.T) {
	f := newDNSFixture(t)
	ep := &pb.EndpointPlan{Name: "big.dnsplan.test.", Ttl: 30}
	for i := range 200 {
		ep.Targets = append(ep.Targets, &pb.Target{Id: fmt.Sprintf("t%d", i), Address: fmt.Sprintf("198.51.%d.%d", i/250, i%250+1), Weight: 1})
	}
	gen := f.apply(&pb.Plan{Endpoints: []*pb.EndpointPlan{ep}})
	f.waitServed("big.dnsplan.test.", gen)
	for _, addr := range f.dnsAddrs() {
		r := query(t, "udp", addr, "big.dnsplan.test.", dns.TypeA, 0)
		r.Compress = true // measure the size as sent
		if !r.Truncated || r.Len() > 512 {
			t.Fatalf("UDP answer: TC=%v, %d bytes", r.Truncated, r.Len())
		}
		r = query(t, "udp", addr, "big.dnsplan.test.", dns.TypeA, 1232)
		r.Compress = true
		if !r.Truncated || r.Len() > 1232 {
			t.Fatalf("UDP+EDNS answer: TC=%v, %d bytes", r.Truncated, r.Len())
		}
		r = query(t, "tcp", addr, "big.dnsplan.test.", dns.TypeA, 0)
		if r.Truncated || len(r.Answer) != 200 {
			t.Fatalf("TCP answer: TC=%v, %d records, want all 200", r.Truncated, len(r.Answer))
		}
	}
}

// Over many queries, the first address is each target's roughly in
// proportion to its weight.
func TestDNSWeightedOrder(t *testing.T) {
	f := newDNSFixture(t)
	plan := &pb.Plan{Endpoints: []*pb.EndpointPlan{{
		Name: "w.dnsplan.test.", Ttl: 30,
		Targets: []*pb.Target{{Id: "heavy", Address: "192.0.2.1", Weight: 3}, {Id: "light", Address: "192.0.2.2", Weight: 1}},
	}}}
	gen := f.apply(plan)
	f.waitServed("w.dnsplan.test.", gen)
	const n = 800
	first := 0
	addr := f.dnsAddrs()[0]
	c := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion("w.dnsplan.test.", dns.TypeA)
	for range n {
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Answer) != 2 {
			t.Fatalf("answer %v, want both targets", r.Answer)
		}
		if r.Answer[0].(*dns.A).A.Equal(net.ParseIP("192.0.2.1")) {
			first++
		}
	}
	// Expected 75%; the bounds are many standard deviations wide.
	if share := float64(first) / n; share < 0.65 || share > 0.85 {
		t.Fatalf("weight-3 target first in %.0f%% of answers, want about 75%%", share*100)
	}
}

// A node cut off from the others keeps answering its last state.
func TestDNSNodeAnswersWhenAlone(t *testing.T) {
	f := newDNSFixture(t)
	gen := f.apply(samplePlan("api.dnsplan.test.", 5, 5))
	f.waitServed("api.dnsplan.test.", gen)
	last := f.c.order[2]
	for _, id := range f.c.order[:2] {
		f.c.stop(id)
	}
	r := query(t, "udp", f.c.specs[last].dnsAddr, "api.dnsplan.test.", dns.TypeA, 0)
	if got := dnswatch.Addresses(r); len(got) != 2 {
		t.Fatalf("lone node answered %v, want its last two addresses", got)
	}
}

// A restarted node never answers older than it answered before it stopped:
// alone, with a replica that only holds its last snapshot, it answers
// SERVFAIL; once its peers are back and it has caught up, it answers the
// newest records again.
func TestDNSRestartedNodeNeverServesOlder(t *testing.T) {
	f := newDNSFixture(t)
	gen := f.apply(samplePlan("api.dnsplan.test.", 5, 5))
	f.waitServed("api.dnsplan.test.", gen)
	f.c.closeAll()
	lone := f.c.order[0]
	f.c.start(lone)
	addr := f.c.specs[lone].dnsAddr
	for range 20 {
		r := query(t, "udp", addr, "api.dnsplan.test.", dns.TypeA, 0)
		if r.Rcode != dns.RcodeServerFailure {
			t.Fatalf("restarted node alone answered %s %v, want SERVFAIL until caught up", dns.RcodeToString[r.Rcode], dnswatch.Addresses(r))
		}
	}
	for _, id := range f.c.order[1:] {
		f.c.start(id)
	}
	f.waitServed("api.dnsplan.test.", gen)
}

// raftCut severs one node's Raft links in both directions while cut is
// set: its listener drops every connection it accepts and its dialer
// refuses, so the node can neither catch up nor be caught up.
type raftCut struct {
	net.Listener
	cut atomic.Bool
}

// cutRaftOf makes node id start with its Raft links cut.
func (c *testCluster) cutRaftOf(id string) *raftCut {
	rc := &raftCut{}
	rc.cut.Store(true)
	prev := c.tune
	c.tune = func(cfg *Config) {
		if prev != nil {
			prev(cfg)
		}
		if cfg.ID != id {
			return
		}
		l, err := net.Listen("tcp", cfg.RaftAddr)
		if err != nil {
			c.t.Fatalf("raft listener for %s: %v", id, err)
		}
		rc.Listener = l
		cfg.RaftListener = rc
		cfg.RaftDial = rc.dial
	}
	return rc
}

func (r *raftCut) Accept() (net.Conn, error) {
	for {
		conn, err := r.Listener.Accept()
		if err != nil || !r.cut.Load() {
			return conn, err
		}
		conn.Close()
	}
}

func (r *raftCut) dial(addr string, timeout time.Duration) (net.Conn, error) {
	if r.cut.Load() {
		return nil, errors.New("raft link cut by the test")
	}
	return (&net.Dialer{Timeout: timeout}).Dial("tcp", addr)
}

// checkNeverEmptier starts node id with its Raft links cut, queries its DNS
// from its first moment while it cannot catch up, then heals the links: it
// must answer SERVFAIL or the applied records, never NXDOMAIN or empty.
func (f *dnsFixture) checkNeverEmptier(t *testing.T, id string, cut *raftCut) {
	addr := f.c.specs[id].dnsAddr
	w := dnswatch.Start(addr, "api.dnsplan.test.", []string{"192.0.2.1", "192.0.2.2"}, 5*time.Millisecond)
	t.Cleanup(w.Stop)
	f.c.start(id)
	waitFor(t, 10*time.Second, id+" answering while cut off", func() bool { n, _ := w.Counts(); return n >= 30 })
	cut.cut.Store(false)
	waitFor(t, 20*time.Second, id+" answering the applied records", func() bool { _, ok := w.Counts(); return ok >= 5 })
	summary, err := w.Finish(id)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s", id, summary)
	st, err := f.c.node(id).Status()
	if err != nil {
		t.Fatal(err)
	}
	if !st.DnsReady || st.DnsFloor == 0 || st.DnsServedIndex == 0 {
		t.Fatalf("%s status: dns_ready %v, dns_floor %d, dns_served_index %d", id, st.DnsReady, st.DnsFloor, st.DnsServedIndex)
	}
}

// A node that joins answers SERVFAIL until its replica holds what the
// cluster had committed when it first reached it, never NXDOMAIN: here it
// cannot catch up at all at first (its Raft links are cut), while the
// member it joins through is reachable over gRPC.
func TestDNSJoiningNodeNeverAnswersEmpty(t *testing.T) {
	f := newDNSFixture(t)
	gen := f.apply(samplePlan("api.dnsplan.test.", 5, 5))
	f.waitServed("api.dnsplan.test.", gen)
	cut := f.c.cutRaftOf("n4")
	f.c.addJoinerSpec("n4", f.c.specs[f.c.follower().ID()].grpcAddr)
	f.checkNeverEmptier(t, "n4", cut)
}

// A member whose data dir is wiped restarts with --initial-cluster, as a
// compose container recreated on an empty volume does: it has no record of
// what it served, so it learns its floor from the cluster.
func TestDNSWipedMemberNeverAnswersEmpty(t *testing.T) {
	f := newDNSFixture(t)
	gen := f.apply(samplePlan("api.dnsplan.test.", 5, 5))
	f.waitServed("api.dnsplan.test.", gen)
	id := f.c.follower().ID()
	f.c.stop(id)
	if err := os.RemoveAll(filepath.Join(f.c.dir, id)); err != nil {
		t.Fatal(err)
	}
	cut := f.c.cutRaftOf(id)
	f.checkNeverEmptier(t, id, cut)
}

// servedGen is the generation a node's DNS says it serves for name (its
// debugging TXT record), or 0.
func servedGen(t *testing.T, addr, name string) uint64 {
	r := query(t, "udp", addr, "_dnsplan."+name, dns.TypeTXT, 0)
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			var g uint64
			if _, err := fmt.Sscanf(strings.Join(txt.Txt, " "), "generation=%d", &g); err == nil {
				return g
			}
		}
	}
	return 0
}

// DNS serves a view only once the index it needs is recorded durably: when
// the record cannot be written, the node keeps serving what is recorded
// (and counts the failure) however far its replica moves on, and moves on
// once the write works again. At every moment the recorded index is at
// least the served one.
func TestDNSServesOnlyWhatIsRecorded(t *testing.T) {
	f := newDNSFixture(t)
	g1 := f.apply(samplePlan("api.dnsplan.test.", 5, 5))
	f.waitServed("api.dnsplan.test.", g1)
	id := f.c.follower().ID()
	n := f.c.node(id)
	dir := filepath.Join(f.c.dir, id)
	addr := f.c.specs[id].dnsAddr
	recorded := func() uint64 {
		idx, _, err := readServedIndex(dir)
		if err != nil {
			t.Fatal(err)
		}
		return idx
	}
	before := recorded()
	// A directory where the temporary file goes makes every write fail,
	// even for root.
	// The node's own temporary file may exist for a moment (a record
	// being written as the test starts): wait for it to be renamed away.
	block := filepath.Join(dir, servedIndexFile+".tmp")
	waitFor(t, 5*time.Second, "room for the blocking directory", func() bool {
		err := os.Mkdir(block, 0o750)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			t.Fatal(err)
		}
		return err == nil
	})
	g2 := f.apply(samplePlan("api.dnsplan.test.", 5, 6))
	waitFor(t, 10*time.Second, id+"'s replica applying generation 2", func() bool {
		var g uint64
		n.State(func(s *fsm.State) { g = s.Applied("api.dnsplan.test.").GetGeneration() })
		return g == g2
	})
	failures := counterValue(t, n, "dnsplan_dns_record_failures_total")
	waitFor(t, 10*time.Second, id+" serving generation 2, or failing twice more to record it", func() bool {
		return servedGen(t, addr, "api.dnsplan.test.") == g2 || counterValue(t, n, "dnsplan_dns_record_failures_total") >= failures+2
	})
	if got := servedGen(t, addr, "api.dnsplan.test."); got != g1 {
		t.Fatalf("%s serves generation %d though the index it needs could not be recorded (file still %d)", id, got, recorded())
	}
	if got := recorded(); got != before {
		t.Fatalf("recorded index moved from %d to %d through a blocked write", before, got)
	}
	if err := os.Remove(block); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, id+" serving generation 2 once it can record it", func() bool {
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		if rec := recorded(); rec < st.DnsServedIndex {
			t.Fatalf("%s serves index %d but has recorded only %d", id, st.DnsServedIndex, rec)
		}
		return servedGen(t, addr, "api.dnsplan.test.") == g2
	})
}

// The floor a node learns is the leader's commit index, which on an idle
// cluster is often one of Raft's own entries (here the new leader's no-op
// and barrier after a leadership transfer) that the state machine never
// sees: a wiped member must still become ready without any further write.
func TestDNSFloorOnRaftOwnEntry(t *testing.T) {
	f := newDNSFixture(t)
	gen := f.apply(samplePlan("api.dnsplan.test.", 5, 5))
	f.waitServed("api.dnsplan.test.", gen)
	old := f.c.leader()
	// Every member has published its gRPC address and the log version is
	// active, so no write follows the transfer.
	waitAddrsKnown(t, old)
	f.c.activated()
	if _, err := f.c.api(old.ID()).cluster.TransferLeadership(ctxT(t), &pb.TransferLeadershipRequest{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a new ready leader", func() bool { return f.c.leader() != old })
	id := f.c.follower().ID()
	f.c.stop(id)
	if err := os.RemoveAll(filepath.Join(f.c.dir, id)); err != nil {
		t.Fatal(err)
	}
	n := f.c.start(id)
	var st *pb.StatusResponse
	waitFor(t, 20*time.Second, id+"'s DNS ready with no write after it started", func() bool {
		var err error
		st, err = n.Status()
		return err == nil && st.DnsReady
	})
	if st.DnsFloor <= st.DnsServedIndex {
		t.Fatalf("floor %d is not above the served index %d: the test no longer ends the log with Raft's own entries", st.DnsFloor, st.DnsServedIndex)
	}
	if r := query(t, "udp", f.c.specs[id].dnsAddr, "api.dnsplan.test.", dns.TypeA, 0); len(dnswatch.Addresses(r)) != 2 {
		t.Fatalf("%s answered %s %v once ready", id, dns.RcodeToString[r.Rcode], dnswatch.Addresses(r))
	}
}

// ReadIndex, asked of any member, answers with an index at or above every
// write acknowledged before the call, names the leader, and fails with
// UNAVAILABLE on a node that cannot reach a quorum.
func TestReadIndex(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.startAll()
	l := c.leader()
	for _, id := range c.order {
		waitAddrsKnown(t, c.node(id))
	}
	ctx := ctxT(t)
	if _, err := c.api(c.follower().ID()).plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 1)}); err != nil {
		t.Fatal(err)
	}
	var acked uint64
	l.State(func(s *fsm.State) { acked = s.LastIndex() })
	for _, id := range c.order {
		r, err := c.api(id).cluster.ReadIndex(ctx, &pb.ReadIndexRequest{})
		if err != nil {
			t.Fatalf("ReadIndex on %s: %v", id, err)
		}
		if r.Index < acked || r.LeaderId != l.ID() {
			t.Fatalf("ReadIndex on %s = %v, want an index of at least %d from leader %s", id, r, acked, l.ID())
		}
	}
	lone := c.follower().ID()
	for _, id := range c.order {
		if id != lone {
			c.stop(id)
		}
	}
	waitFor(t, 10*time.Second, "ReadIndex failing on a node alone", func() bool {
		_, err := c.api(lone).cluster.ReadIndex(ctx, &pb.ReadIndexRequest{})
		return status.Code(err) == codes.Unavailable
	})
}

// waitAddrsKnown waits until n's replica holds every member's gRPC address,
// which followers need to forward to the leader.
func waitAddrsKnown(t *testing.T, n *Node) {
	t.Helper()
	waitFor(t, 10*time.Second, "every member's address recorded on "+n.ID(), func() bool {
		st, err := n.Status()
		if err != nil {
			return false
		}
		for _, m := range st.Members {
			if m.GrpcAddr == "" {
				return false
			}
		}
		return true
	})
}
