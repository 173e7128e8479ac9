package dnsserver

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

const (
	soaMain  = "dnsplan.test. 30 IN SOA ns1.dnsplan.test. hostmaster.dnsplan.test. 10 3600 600 86400 30"
	soaInner = "inner.dnsplan.test. 30 IN SOA ns1.inner.dnsplan.test. hostmaster.inner.dnsplan.test. 12 3600 600 86400 30"
)

func TestQueries(t *testing.T) {
	s := newTestServer(t, Config{}, testApplied())
	udp, tcp := startServer(t, s)

	type tc struct {
		name string
		// via is "udp" or "tcp" (a real client and server) or "handler"
		// (ServeDNS directly, for queries the network layer would drop).
		via    string
		q      *dns.Msg
		rcode  int
		aa     bool
		answer []string // exact set; nil means empty
		soa    string   // the authority section's only record; "" means empty
		check  func(t *testing.T, r *dns.Msg)
	}
	apiA := []string{"api.dnsplan.test. 60 IN A 10.0.0.1", "api.dnsplan.test. 60 IN A 10.0.0.2"}
	noEDNS := func(t *testing.T, r *dns.Msg) {
		if r.IsEdns0() != nil {
			t.Error("OPT in the reply to a query without one")
		}
	}
	cases := []tc{
		{name: "A over UDP", via: "udp", q: question("api.dnsplan.test.", dns.TypeA), aa: true, answer: apiA, check: noEDNS},
		{name: "A over TCP", via: "tcp", q: question("api.dnsplan.test.", dns.TypeA), aa: true, answer: apiA},
		{name: "AAAA", via: "udp", q: question("api.dnsplan.test.", dns.TypeAAAA), aa: true,
			answer: []string{"api.dnsplan.test. 60 IN AAAA 2001:db8::1"}},
		// The exact answer sets above already leave out 10.0.0.3 and
		// 2001:db8::2; this case says so by name, for the mutation check.
		{name: "weight-0 targets absent", via: "udp", q: question("api.dnsplan.test.", dns.TypeA), aa: true, answer: apiA,
			check: func(t *testing.T, r *dns.Msg) {
				if slices.Contains(addresses(r.Answer), "10.0.0.3") {
					t.Error("drained target 10.0.0.3 (weight 0) answered")
				}
			}},
		{name: "TTL is the endpoint's", via: "udp", q: question("www.deep.path.dnsplan.test.", dns.TypeA), aa: true,
			answer: []string{"www.deep.path.dnsplan.test. 120 IN A 10.0.1.1"}},
		{name: "case-insensitive, question echoed as asked", via: "udp", q: question("API.DnsPlan.TEST.", dns.TypeA), aa: true, answer: apiA,
			check: func(t *testing.T, r *dns.Msg) {
				if len(r.Question) != 1 || r.Question[0].Name != "API.DnsPlan.TEST." {
					t.Errorf("question = %v, want API.DnsPlan.TEST. as asked", r.Question)
				}
			}},
		{name: "RD echoed, RA clear", via: "udp", q: question("api.dnsplan.test.", dns.TypeA), aa: true, answer: apiA,
			check: func(t *testing.T, r *dns.Msg) {
				if !r.RecursionDesired {
					t.Error("RD not copied from the query")
				}
			}},
		{name: "NXDOMAIN with SOA", via: "udp", q: question("nope.dnsplan.test.", dns.TypeA), rcode: dns.RcodeNameError, aa: true, soa: soaMain},
		{name: "NXDOMAIN below an empty non-terminal", via: "udp", q: question("x.path.dnsplan.test.", dns.TypeA), rcode: dns.RcodeNameError, aa: true, soa: soaMain},
		{name: "NODATA other type", via: "udp", q: question("api.dnsplan.test.", dns.TypeMX), aa: true, soa: soaMain},
		{name: "NODATA A for IPv6-only endpoint", via: "udp", q: question("v6only.dnsplan.test.", dns.TypeA), aa: true, soa: soaMain},
		{name: "NODATA empty non-terminal", via: "udp", q: question("path.dnsplan.test.", dns.TypeA), aa: true, soa: soaMain},
		{name: "NODATA deeper empty non-terminal", via: "tcp", q: question("Deep.Path.dnsplan.test.", dns.TypeAAAA), aa: true, soa: soaMain},
		{name: "NODATA SOA below the apex", via: "udp", q: question("api.dnsplan.test.", dns.TypeSOA), aa: true, soa: soaMain},
		{name: "REFUSED outside every zone", via: "udp", q: question("example.com.", dns.TypeA), rcode: dns.RcodeRefused},
		{name: "REFUSED for the zone's parent", via: "udp", q: question("test.", dns.TypeSOA), rcode: dns.RcodeRefused},
		{name: "REFUSED for an applied name outside every zone", via: "udp", q: question("outside.example.", dns.TypeA), rcode: dns.RcodeRefused},
		{name: "REFUSED for class CHAOS", via: "udp", q: func() *dns.Msg {
			m := question("api.dnsplan.test.", dns.TypeA)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}(), rcode: dns.RcodeRefused},
		{name: "REFUSED zone transfer", via: "tcp", q: question("dnsplan.test.", dns.TypeAXFR), rcode: dns.RcodeRefused},
		{name: "SOA at the apex", via: "udp", q: question("dnsplan.test.", dns.TypeSOA), aa: true, answer: []string{soaMain}},
		{name: "NS at the apex", via: "udp", q: question("dnsplan.test.", dns.TypeNS), aa: true,
			answer: []string{"dnsplan.test. 3600 IN NS ns1.dnsplan.test."}},
		{name: "NODATA A at an apex without endpoint", via: "udp", q: question("dnsplan.test.", dns.TypeA), aa: true, soa: soaMain},
		{name: "nested zone: answer from the most specific", via: "udp", q: question("svc.inner.dnsplan.test.", dns.TypeA), aa: true,
			answer: []string{"svc.inner.dnsplan.test. 15 IN A 10.0.2.1"}},
		{name: "nested zone: its own SOA", via: "udp", q: question("inner.dnsplan.test.", dns.TypeSOA), aa: true, answer: []string{soaInner}},
		{name: "nested zone: its own NS", via: "udp", q: question("inner.dnsplan.test.", dns.TypeNS), aa: true,
			answer: []string{"inner.dnsplan.test. 3600 IN NS ns1.inner.dnsplan.test."}},
		{name: "nested zone: NXDOMAIN with its SOA", via: "udp", q: question("nope.inner.dnsplan.test.", dns.TypeA), rcode: dns.RcodeNameError, aa: true, soa: soaInner},
		{name: "TXT debug record", via: "udp", q: question("_dnsplan.api.dnsplan.test.", dns.TypeTXT), aa: true,
			answer: []string{`_dnsplan.api.dnsplan.test. 0 IN TXT "generation=3 enactor=enactor-a revision=10"`}},
		{name: "NODATA A at the debug name", via: "udp", q: question("_dnsplan.api.dnsplan.test.", dns.TypeA), aa: true, soa: soaMain},
		{name: "ANY minimal (RFC 8482)", via: "udp", q: question("api.dnsplan.test.", dns.TypeANY), aa: true,
			answer: []string{`api.dnsplan.test. 3600 IN HINFO "RFC8482" ""`}},
		{name: "ANY at the apex", via: "tcp", q: question("dnsplan.test.", dns.TypeANY), aa: true,
			answer: []string{`dnsplan.test. 3600 IN HINFO "RFC8482" ""`}},
		{name: "ANY at an empty non-terminal is NODATA", via: "udp", q: question("path.dnsplan.test.", dns.TypeANY), aa: true, soa: soaMain},
		{name: "ANY of an unknown name is NXDOMAIN", via: "udp", q: question("nope.dnsplan.test.", dns.TypeANY), rcode: dns.RcodeNameError, aa: true, soa: soaMain},
		{name: "EDNS: OPT answered with our size", via: "udp", q: withEDNS(question("api.dnsplan.test.", dns.TypeA), 1232), aa: true, answer: apiA,
			check: func(t *testing.T, r *dns.Msg) {
				opt := r.IsEdns0()
				if opt == nil || opt.UDPSize() != maxUDPSize || opt.Version() != 0 || opt.Do() {
					t.Errorf("reply OPT = %v, want version 0, size %d, DO clear", opt, maxUDPSize)
				}
			}},
		{name: "EDNS: DO bit copied", via: "udp", q: func() *dns.Msg {
			m := question("api.dnsplan.test.", dns.TypeA)
			m.SetEdns0(1232, true)
			return m
		}(), aa: true, answer: apiA,
			check: func(t *testing.T, r *dns.Msg) {
				if opt := r.IsEdns0(); opt == nil || !opt.Do() {
					t.Errorf("reply OPT = %v, want DO set", opt)
				}
			}},
		{name: "EDNS: bad version is BADVERS", via: "udp", q: func() *dns.Msg {
			m := withEDNS(question("api.dnsplan.test.", dns.TypeA), 1232)
			m.IsEdns0().SetVersion(1)
			return m
		}(), rcode: dns.RcodeBadVers,
			check: func(t *testing.T, r *dns.Msg) {
				if opt := r.IsEdns0(); opt == nil || opt.Version() != 0 {
					t.Errorf("reply OPT = %v, want one of version 0", opt)
				}
			}},
		{name: "FORMERR: two OPT records", via: "udp", q: func() *dns.Msg {
			m := withEDNS(question("api.dnsplan.test.", dns.TypeA), 1232)
			return withEDNS(m, 1232)
		}(), rcode: dns.RcodeFormatError},
		{name: "FORMERR: no question", via: "udp", q: &dns.Msg{MsgHdr: dns.MsgHdr{Id: 7, Opcode: dns.OpcodeQuery}}, rcode: dns.RcodeFormatError},
		{name: "FORMERR: two questions", via: "udp", q: func() *dns.Msg {
			m := question("api.dnsplan.test.", dns.TypeA)
			m.Question = append(m.Question, dns.Question{Name: "api.dnsplan.test.", Qtype: dns.TypeAAAA, Qclass: dns.ClassINET})
			return m
		}(), rcode: dns.RcodeFormatError},
		{name: "FORMERR: QR set", via: "handler", q: func() *dns.Msg {
			m := question("api.dnsplan.test.", dns.TypeA)
			m.Response = true
			return m
		}(), rcode: dns.RcodeFormatError},
		{name: "FORMERR: OPT as the query type", via: "udp", q: question("api.dnsplan.test.", dns.TypeOPT), rcode: dns.RcodeFormatError},
		{name: "NOTIMP: NOTIFY", via: "udp", q: func() *dns.Msg {
			m := question("dnsplan.test.", dns.TypeSOA)
			m.Opcode = dns.OpcodeNotify
			return m
		}(), rcode: dns.RcodeNotImplemented},
		{name: "NOTIMP: UPDATE", via: "tcp", q: func() *dns.Msg {
			m := new(dns.Msg)
			m.SetUpdate("dnsplan.test.")
			m.Insert([]dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "evil.dnsplan.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(10, 9, 9, 9)}})
			return m
		}(), rcode: dns.RcodeNotImplemented},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var r *dns.Msg
			switch c.via {
			case "udp":
				r = exchange(t, "udp", udp, c.q)
			case "tcp":
				r = exchange(t, "tcp", tcp, c.q)
			case "handler":
				r = serve(t, s, c.q, false)
			}
			if r.Id != c.q.Id || !r.Response {
				t.Errorf("id %d response %v, want id %d and QR set", r.Id, r.Response, c.q.Id)
			}
			if r.Rcode != c.rcode {
				t.Errorf("rcode = %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[c.rcode])
			}
			if r.Authoritative != c.aa {
				t.Errorf("AA = %v, want %v", r.Authoritative, c.aa)
			}
			if r.RecursionAvailable {
				t.Error("RA set; this server never recurses")
			}
			if r.Truncated {
				t.Error("TC set on a small answer")
			}
			if got := rrTexts(r.Answer); !slices.Equal(got, c.answer) && len(got)+len(c.answer) > 0 {
				t.Errorf("answer =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(c.answer, "\n  "))
			}
			var wantNs []string
			if c.soa != "" {
				wantNs = []string{c.soa}
			}
			if got := rrTexts(r.Ns); !slices.Equal(got, wantNs) && len(got)+len(wantNs) > 0 {
				t.Errorf("authority = %q, want %q", got, wantNs)
			}
			if c.check != nil {
				c.check(t, r)
			}
		})
	}
}

func TestTruncation(t *testing.T) {
	s := newTestServer(t, Config{}, append(testApplied(), bigEndpoint("big.dnsplan.test.", 200)))
	udp, tcp := startServer(t, s)

	checkAll := func(t *testing.T, r *dns.Msg) {
		t.Helper()
		for _, a := range addresses(r.Answer) {
			if !strings.HasPrefix(a, "10.1.") {
				t.Fatalf("unexpected address %s", a)
			}
		}
	}

	// Without EDNS: 512 octets.
	r, n := exchangeRaw(t, udp, question("big.dnsplan.test.", dns.TypeA))
	if !r.Truncated || n > dns.MinMsgSize || len(r.Answer) == 0 || len(r.Answer) >= 200 {
		t.Errorf("UDP without EDNS: TC %v, %d octets, %d answers; want TC, <= 512 octets, some but not all answers",
			r.Truncated, n, len(r.Answer))
	}
	checkAll(t, r)
	plain := len(r.Answer)

	// With EDNS 1232 (DNS flag day 2020): up to 1232, and the OPT kept.
	r, n = exchangeRaw(t, udp, withEDNS(question("big.dnsplan.test.", dns.TypeA), 1232))
	if !r.Truncated || n > 1232 || len(r.Answer) <= plain || len(r.Answer) >= 200 || r.IsEdns0() == nil {
		t.Errorf("UDP with EDNS 1232: TC %v, %d octets, %d answers, OPT %v; want TC, <= 1232 octets, more than %d answers, an OPT",
			r.Truncated, n, len(r.Answer), r.IsEdns0() != nil, plain)
	}
	checkAll(t, r)

	// An advertised size below 512 still gets 512 (RFC 6891 §6.2.5).
	r, n = exchangeRaw(t, udp, withEDNS(question("big.dnsplan.test.", dns.TypeA), 100))
	if !r.Truncated || n > dns.MinMsgSize || len(r.Answer) == 0 {
		t.Errorf("UDP with EDNS 100: TC %v, %d octets, %d answers", r.Truncated, n, len(r.Answer))
	}

	// The same question over TCP gets everything.
	for _, q := range []*dns.Msg{question("big.dnsplan.test.", dns.TypeA), withEDNS(question("big.dnsplan.test.", dns.TypeA), 1232)} {
		r = exchange(t, "tcp", tcp, q)
		if r.Truncated || len(r.Answer) != 200 {
			t.Errorf("TCP: TC %v, %d answers; want all 200", r.Truncated, len(r.Answer))
		}
		checkAll(t, r)
		if got := len(slices.Compact(slices.Sorted(slices.Values(addresses(r.Answer))))); got != 200 {
			t.Errorf("TCP: %d distinct addresses, want 200", got)
		}
	}
}

func TestWeightedOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := newTestServer(t, Config{Rand: rng.Uint64}, []*pb.AppliedEndpoint{{
		Endpoint: "w.dnsplan.test.", Generation: 1, Ttl: 60, Revision: 1,
		Targets: []*pb.Target{
			{Id: "light", Address: "10.0.0.1", Weight: 1},
			{Id: "heavy", Address: "10.0.0.9", Weight: 9},
		},
	}})
	const queries = 2000
	heavyFirst := 0
	for range queries {
		r := serve(t, s, question("w.dnsplan.test.", dns.TypeA), false)
		got := addresses(r.Answer)
		if len(got) != 2 {
			t.Fatalf("answer %v, want both targets", got)
		}
		if got[0] == "10.0.0.9" {
			heavyFirst++
		}
	}
	// Expected 90%; with 2000 draws one standard deviation is about 0.7%,
	// so these bounds fail only when the order is not weighted.
	if share := float64(heavyFirst) / queries; share < 0.80 || share > 0.97 {
		t.Errorf("weight-9 target first in %.1f%% of answers, want about 90%%", 100*share)
	}
	t.Logf("weight-9 target first in %d of %d answers", heavyFirst, queries)
}

func TestSerialFollowsRevision(t *testing.T) {
	s := newTestServer(t, Config{}, nil)
	serial := func() uint32 {
		t.Helper()
		r := serve(t, s, question("dnsplan.test.", dns.TypeSOA), false)
		if len(r.Answer) != 1 {
			t.Fatalf("SOA answer %v", r.Answer)
		}
		return r.Answer[0].(*dns.SOA).Serial
	}
	if got := serial(); got != 1 {
		t.Errorf("serial of an empty zone = %d, want 1", got)
	}
	applied := testApplied()
	s.Update(applied)
	if got := serial(); got != 10 {
		t.Errorf("serial = %d, want 10 (the zone's newest revision)", got)
	}
	applied[1].Revision = 31 // v6only re-applied
	s.Update(applied)
	if got := serial(); got != 31 {
		t.Errorf("serial after an apply at revision 31 = %d, want 31", got)
	}
	// A revision outside the zone does not move it.
	applied[4].Revision = 40
	s.Update(applied)
	if got := serial(); got != 31 {
		t.Errorf("serial after a change outside the zone = %d, want 31", got)
	}
	// Handed an older state, the serial still never goes back.
	s.Update(testApplied())
	if got := serial(); got != 31 {
		t.Errorf("serial after an older state = %d, want it kept at 31", got)
	}
}

func TestSerialLess(t *testing.T) {
	for _, c := range []struct {
		a, b uint32
		want bool
	}{
		{1, 2, true}, {2, 1, false}, {5, 5, false},
		{0xFFFFFFF0, 3, true}, // wrapped: 3 is after 0xFFFFFFF0
		{3, 0xFFFFFFF0, false},
	} {
		if got := serialLess(c.a, c.b); got != c.want {
			t.Errorf("serialLess(%d, %d) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// TestUpdateWhileQuerying swaps views under concurrent queries: no answer
// is ever empty for the applied endpoint, none mixes two generations, none
// holds a drained target, and no reader sees the generation go backwards
// (invariants I1 and I2 as this node serves them).
func TestUpdateWhileQuerying(t *testing.T) {
	// live's targets encode the generation in the address: 10.<g/256>.<g%256>.<host>.
	// Host .1 has weight g%2 (drained every other generation), .2 always
	// weight > 0, .3 always weight 0.
	state := func(g uint64) []*pb.AppliedEndpoint {
		addr := func(host int) string { return net.IPv4(10, byte(g>>8), byte(g), byte(host)).String() }
		return []*pb.AppliedEndpoint{
			{
				Endpoint: "live.dnsplan.test.", Generation: g, Ttl: 5, EnactorId: "enactor-a", Revision: 100 + g,
				Targets: []*pb.Target{
					{Id: "t1", Address: addr(1), Weight: uint32(g % 2)},
					{Id: "t2", Address: addr(2), Weight: uint32(1 + g%3)},
					{Id: "t3", Address: addr(3), Weight: 0},
				},
			},
			testApplied()[0],
		}
	}
	// generationOf checks one answer and returns the generation it holds.
	generationOf := func(r *dns.Msg) (uint64, error) {
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
			return 0, fmt.Errorf("empty answer for an applied endpoint: rcode %s, answer %v", dns.RcodeToString[r.Rcode], r.Answer)
		}
		var gen uint64
		for i, rr := range r.Answer {
			ip := rr.(*dns.A).A.To4()
			g := uint64(ip[1])<<8 | uint64(ip[2])
			if ip[3] == 3 {
				return 0, fmt.Errorf("drained target %s answered", ip)
			}
			if i > 0 && g != gen {
				return 0, fmt.Errorf("one answer mixes generations %d and %d: %v", gen, g, r.Answer)
			}
			gen = g
		}
		return gen, nil
	}

	s := newTestServer(t, Config{}, state(1))
	udp, _ := startServer(t, s)
	// The updater keeps going until every reader has made enough queries,
	// so readers and Update overlap however the scheduler runs them. It
	// waits for some reader's progress after each Update, which keeps it
	// from starving the network reader on a small machine.
	const (
		minUpdates = 300
		maxGen     = 60000 // what the address encoding holds
		handlers   = 2
	)
	minQueries := [handlers + 1]int64{200, 200, 30}
	var counts [handlers + 1]atomic.Int64
	progress := make(chan struct{}, 1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	read := func(i int, query func() (*dns.Msg, error)) {
		last := uint64(0)
		for {
			select {
			case <-done:
				return
			default:
			}
			r, err := query()
			if err != nil {
				t.Errorf("reader %d: %v", i, err)
				return
			}
			g, err := generationOf(r)
			if err != nil {
				t.Errorf("reader %d: %v", i, err)
				return
			}
			if g < last {
				t.Errorf("reader %d: generation went back from %d to %d", i, last, g)
				return
			}
			last = g
			counts[i].Add(1)
			select {
			case progress <- struct{}{}:
			default:
			}
		}
	}
	// Readers through the handler, at full speed.
	for i := range handlers {
		wg.Go(func() {
			read(i, func() (*dns.Msg, error) {
				w := &captureWriter{}
				s.ServeDNS(w, question("live.dnsplan.test.", dns.TypeA))
				if len(w.errs) > 0 || len(w.replies) != 1 {
					return nil, fmt.Errorf("%d replies, errors %v", len(w.replies), w.errs)
				}
				return w.replies[0], nil
			})
		})
	}
	// One reader through the network, as a resolver would.
	wg.Go(func() {
		c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
		read(handlers, func() (*dns.Msg, error) {
			r, _, err := c.Exchange(question("live.dnsplan.test.", dns.TypeA), udp)
			return r, err
		})
	})
	enough := func() bool {
		for i := range counts {
			if counts[i].Load() < minQueries[i] {
				return false
			}
		}
		return true
	}
	// A reader that stops early (on a failure) must not leave the updater
	// waiting for progress forever.
	readersGone := make(chan struct{})
	go func() { wg.Wait(); close(readersGone) }()
	g := uint64(1)
updates:
	for (g < minUpdates || !enough()) && g < maxGen {
		g++
		s.Update(state(g))
		select {
		case <-progress:
		case <-readersGone:
			break updates
		}
	}
	close(done)
	<-readersGone
	if !enough() {
		t.Errorf("readers made %v queries during %d updates, want %v", &counts, g, minQueries)
	}
	if got, err := generationOf(serve(t, s, question("live.dnsplan.test.", dns.TypeA), false)); err != nil || got != g {
		t.Errorf("final answer: generation %d (%v), want %d", got, err, g)
	}
	t.Logf("%d updates", g)
}

func TestNew(t *testing.T) {
	for _, c := range []struct {
		name    string
		cfg     Config
		wantErr bool
		zones   []string
	}{
		{name: "default zone", zones: []string{"dnsplan.test."}},
		{name: "lower-cased", cfg: Config{Zones: []string{"Example.ORG."}}, zones: []string{"example.org."}},
		{name: "nested", cfg: Config{Zones: testZones}, zones: testZones},
		{name: "not fully qualified", cfg: Config{Zones: []string{"example.org"}}, wantErr: true},
		{name: "duplicate, case aside", cfg: Config{Zones: []string{"example.org.", "EXAMPLE.org."}}, wantErr: true},
		{name: "invalid name", cfg: Config{Zones: []string{"a..b."}}, wantErr: true},
		{name: "NS name not fully qualified", cfg: Config{NSNames: []string{"ns1.example.org"}}, wantErr: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Logger = quietLogger()
			s, err := New(c.cfg)
			if c.wantErr {
				if err == nil {
					t.Fatalf("New(%+v) succeeded, want an error", c.cfg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Zones(); !slices.Equal(got, c.zones) {
				t.Errorf("zones = %v, want %v", got, c.zones)
			}
		})
	}
}

func TestConfiguredNSNames(t *testing.T) {
	s := newTestServer(t, Config{NSNames: []string{"NS-A.example.net.", "ns-b.example.net."}}, nil)
	r := serve(t, s, question("inner.dnsplan.test.", dns.TypeNS), false)
	want := []string{"inner.dnsplan.test. 3600 IN NS ns-a.example.net.", "inner.dnsplan.test. 3600 IN NS ns-b.example.net."}
	if got := rrTexts(r.Answer); !slices.Equal(got, want) {
		t.Errorf("NS = %q, want %q", got, want)
	}
	r = serve(t, s, question("inner.dnsplan.test.", dns.TypeSOA), false)
	if soa := r.Answer[0].(*dns.SOA); soa.Ns != "ns-a.example.net." {
		t.Errorf("SOA MNAME = %s, want the first NS name", soa.Ns)
	}
}

func TestStartClose(t *testing.T) {
	s := newTestServer(t, Config{}, testApplied())
	if err := s.Start(nil, nil); !errors.Is(err, ErrNoListener) {
		t.Errorf("Start(nil, nil) = %v, want ErrNoListener", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close before Start = %v", err)
	}

	// UDP only.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(pc, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(pc, nil); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start = %v, want ErrStarted", err)
	}
	if r := exchange(t, "udp", pc.LocalAddr().String(), question("api.dnsplan.test.", dns.TypeA)); len(r.Answer) != 2 {
		t.Errorf("answer %v", r.Answer)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := pc.WriteTo([]byte{0}, pc.LocalAddr()); err == nil {
		t.Error("UDP socket still open after Close")
	}

	// TCP only, after a restart with new listeners.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(nil, ln); err != nil {
		t.Fatal(err)
	}
	if r := exchange(t, "tcp", ln.Addr().String(), question("api.dnsplan.test.", dns.TypeA)); len(r.Answer) != 2 {
		t.Errorf("answer %v", r.Answer)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("TCP listener still accepting after Close")
	}
	// The view outlives the listeners.
	if r := serve(t, s, question("api.dnsplan.test.", dns.TypeA), false); len(r.Answer) != 2 {
		t.Errorf("ServeDNS after Close: %v", r.Answer)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newTestServer(t, Config{Registerer: reg}, testApplied())
	serve(t, s, question("api.dnsplan.test.", dns.TypeA), false)
	serve(t, s, question("api.dnsplan.test.", dns.TypeA), false)
	serve(t, s, question("nope.dnsplan.test.", dns.TypeA), false)
	serve(t, s, question("api.dnsplan.test.", 65280), false) // private-use type
	serve(t, s, &dns.Msg{}, false)

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	var observed uint64
	for _, f := range families {
		for _, m := range f.GetMetric() {
			switch f.GetName() {
			case "dnsplan_dns_queries_total":
				var key []string
				for _, l := range m.GetLabel() {
					key = append(key, l.GetName()+"="+l.GetValue())
				}
				counts[strings.Join(key, ",")] = m.GetCounter().GetValue()
			case "dnsplan_dns_query_seconds":
				observed = m.GetHistogram().GetSampleCount()
			}
		}
	}
	want := map[string]float64{
		"qtype=A,rcode=NOERROR":     2,
		"qtype=A,rcode=NXDOMAIN":    1,
		"qtype=other,rcode=NOERROR": 1,
		"qtype=none,rcode=FORMERR":  1,
	}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("queries_total{%s} = %v, want %v (all: %v)", k, counts[k], v, counts)
		}
	}
	if len(counts) != len(want) {
		t.Errorf("series %v, want exactly %v", counts, want)
	}
	if observed != 5 {
		t.Errorf("query_seconds count = %d, want 5", observed)
	}
	// A second server on the same registry is a configuration mistake.
	if _, err := New(Config{Registerer: reg, Logger: quietLogger()}); err == nil {
		t.Error("New with an already-used registry succeeded")
	}
}

// TestUpdateSkipsUnservable: bad entries are skipped, the rest served.
func TestUpdateSkipsUnservable(t *testing.T) {
	applied := append(testApplied(),
		nil,
		&pb.AppliedEndpoint{Endpoint: "not a name", Revision: 50},
		&pb.AppliedEndpoint{Endpoint: "bad.dnsplan.test.", Ttl: 60, Revision: 11, Targets: []*pb.Target{
			{Id: "x", Address: "not-an-ip", Weight: 1},
			{Id: "y", Address: "10.0.9.9", Weight: 1},
		}},
		// A duplicate with an older revision loses, whatever the order.
		&pb.AppliedEndpoint{Endpoint: "API.dnsplan.test.", Ttl: 60, Revision: 2, Targets: []*pb.Target{
			{Id: "old", Address: "10.9.9.9", Weight: 1},
		}},
	)
	s := newTestServer(t, Config{}, applied)
	if got := addresses(serve(t, s, question("bad.dnsplan.test.", dns.TypeA), false).Answer); !slices.Equal(got, []string{"10.0.9.9"}) {
		t.Errorf("bad.dnsplan.test. = %v, want the valid target only", got)
	}
	if got := addresses(serve(t, s, question("api.dnsplan.test.", dns.TypeA), false).Answer); slices.Contains(got, "10.9.9.9") || len(got) != 2 {
		t.Errorf("api.dnsplan.test. = %v, want the newest revision's targets", got)
	}
}

func TestTXTStrings(t *testing.T) {
	long := strings.Repeat("x", 300)
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"generation=1 enactor=a revision=2", []string{"generation=1 enactor=a revision=2"}},
		{`a\b`, []string{`a\\b`}},
		{long, []string{long[:255], long[255:]}},
	} {
		if got := txtStrings(c.in); !slices.Equal(got, c.want) {
			t.Errorf("txtStrings(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	// And it survives the wire with an awkward enactor id.
	s := newTestServer(t, Config{}, []*pb.AppliedEndpoint{{
		Endpoint: "e.dnsplan.test.", Generation: 4, Revision: 5, EnactorId: `we"ird\id`,
		Targets: []*pb.Target{{Id: "a", Address: "10.0.0.1", Weight: 1}},
	}})
	r := serve(t, s, question("_dnsplan.e.dnsplan.test.", dns.TypeTXT), false)
	if len(r.Answer) != 1 {
		t.Fatalf("answer %v", r.Answer)
	}
	var b []byte
	for _, part := range r.Answer[0].(*dns.TXT).Txt {
		b = append(b, part...)
	}
	if got, want := string(b), `generation=4 enactor=we\"ird\\id revision=5`; got != want {
		// miekg/dns presents the unpacked text with " and \ escaped.
		t.Errorf("TXT = %s, want %s", got, want)
	}
}

// TestUpdateLogs: the view is rebuilt after every state change, so a lasting
// oddity is logged when it appears, not on every Update; a generation going
// backwards (invariant I1) is always logged.
func TestUpdateLogs(t *testing.T) {
	var buf bytes.Buffer
	s := newTestServer(t, Config{Logger: slog.New(slog.NewTextHandler(&buf, nil))}, nil)
	bad := append(testApplied(), &pb.AppliedEndpoint{Endpoint: "bad.dnsplan.test.", Ttl: 60, Revision: 11, Targets: []*pb.Target{
		{Id: "x", Address: "not-an-ip", Weight: 1},
		{Id: "y", Address: "10.0.9.9", Weight: 1},
	}})
	s.Update(bad)
	s.Update(bad)
	older := testApplied()
	older[0].Generation = 2
	s.Update(older)
	for msg, want := range map[string]int{
		"applied record not served":                       1,
		"applied endpoint outside every zone, not served": 1,
		"applied generation went backwards":               1,
		"applied endpoint disappeared from the view":      1, // bad.dnsplan.test.
	} {
		if got := strings.Count(buf.String(), `msg="`+msg+`"`); got != want {
			t.Errorf("%q logged %d times, want %d; log:\n%s", msg, got, want, buf.String())
		}
	}
}

// Before its first Update a server has no data: it answers SERVFAIL in its
// zones (never a cacheable NXDOMAIN) and REFUSED outside them; after an
// Update, even an empty one, it answers normally.
func TestServFailUntilFirstUpdate(t *testing.T) {
	s, err := New(Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if r := serve(t, s, question("api.dnsplan.test.", dns.TypeA), false); r.Rcode != dns.RcodeServerFailure || r.Authoritative {
		t.Fatalf("before Update: rcode %s aa=%v, want SERVFAIL", dns.RcodeToString[r.Rcode], r.Authoritative)
	}
	if r := serve(t, s, question("example.com.", dns.TypeA), false); r.Rcode != dns.RcodeRefused {
		t.Fatalf("outside zones before Update: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	s.Update(nil)
	if r := serve(t, s, question("api.dnsplan.test.", dns.TypeA), false); r.Rcode != dns.RcodeNameError {
		t.Fatalf("after an empty Update: %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
}
