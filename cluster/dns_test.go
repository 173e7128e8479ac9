package cluster

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsplan/dnsplan/cluster/fsm"
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

func addrsOf(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	slices.Sort(out)
	return out
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
			if got := addrsOf(r); !slices.Equal(got, []string{"192.0.2.1"}) {
				t.Fatalf("%s %s A = %v, want only the weighted IPv4 target", addr, netw, got)
			}
			if r.Answer[0].Header().Ttl != 42 {
				t.Fatalf("TTL = %d, want the plan's 42", r.Answer[0].Header().Ttl)
			}
		}
		if got := addrsOf(query(t, "udp", addr, "api.dnsplan.test.", dns.TypeAAAA, 0)); !slices.Equal(got, []string{"2001:db8::1"}) {
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
	if got := addrsOf(r); len(got) != 2 {
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
			t.Fatalf("restarted node alone answered %s %v, want SERVFAIL until caught up", dns.RcodeToString[r.Rcode], addrsOf(r))
		}
	}
	for _, id := range f.c.order[1:] {
		f.c.start(id)
	}
	f.waitServed("api.dnsplan.test.", gen)
}

// counterValue sums a metric's samples in a node's registry (0 if absent).
func counterValue(t *testing.T, n *Node, name string) float64 {
	t.Helper()
	mfs, err := n.metrics.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return v
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
		idx, err := readServedIndex(dir)
		if err != nil {
			t.Fatal(err)
		}
		return idx
	}
	before := recorded()
	// A directory where the temporary file goes makes every write fail,
	// even for root.
	block := filepath.Join(dir, servedIndexFile+".tmp")
	if err := os.Mkdir(block, 0o750); err != nil {
		t.Fatal(err)
	}
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
