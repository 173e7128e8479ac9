package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/probe"
)

func rec(gen uint64, at time.Duration, forced bool, weights ...any) served {
	s := served{gen: gen, at: int64(at), weight: map[string]uint32{}, forced: forced}
	for i := 0; i < len(weights); i += 2 {
		s.weight[weights[i].(string)] = uint32(weights[i+1].(int))
	}
	return s
}

// The sequence check flags what the cluster must refuse: a family
// emptied, capacity dropped below half of the window's highest (replacing
// an address counts as removing it), and nothing that was forced; after
// an apply whose record is unknown it starts afresh.
func TestJudgeSequence(t *testing.T) {
	const a1, a2, a3, a4, v6 = "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "2001:db8::1"
	unknown := func(at time.Duration) served { return served{unknown: true, at: int64(at)} }
	for _, tt := range []struct {
		name    string
		records []served
		want    []string // invariants, in order
	}{
		{"steady", []served{rec(1, 0, false, a1, 100, a2, 100), rec(2, time.Second, false, a1, 100, a2, 100, a3, 100)}, nil},
		{"half is the limit", []served{rec(1, 0, false, a1, 100, a2, 100, a3, 100, a4, 100), rec(2, time.Second, false, a1, 100, a2, 100)}, nil},
		// 400 → 200 → 100: each step within the limit against the one
		// before, 75% below the window's highest.
		{"steps add up", []served{rec(1, 0, false, a1, 100, a2, 100, a3, 100, a4, 100), rec(2, time.Second, false, a1, 100, a2, 100), rec(3, 2*time.Second, false, a1, 100)}, []string{"I7"}},
		{"replaced at equal weight", []served{rec(1, 0, false, a1, 100, a2, 100), rec(2, time.Second, false, a3, 100, a4, 100)}, []string{"I7"}},
		// Judged against the highest record only: {a1,a2,a3,a4}, then
		// {a1,a2,a3}, then {a1,a4} keeps half of the highest.
		{"against the highest", []served{rec(1, 0, false, a1, 100, a2, 100, a3, 100, a4, 100), rec(2, time.Second, false, a1, 100, a2, 100, a3, 100), rec(3, 2*time.Second, false, a1, 100, a4, 100)}, nil},
		// A record is served until the next is applied: the window holds
		// record 1 while record 2 came within it.
		{"served until replaced", []served{rec(1, 0, false, a1, 100, a2, 100, a3, 100, a4, 100), rec(2, velocityWindow-time.Second, false, a1, 100, a2, 100), rec(3, velocityWindow+time.Second, false, a1, 100)}, []string{"I7"}},
		// The steps of "steps add up", the first one out of the window.
		{"outside the window", []served{rec(1, 0, false, a1, 100, a2, 100, a3, 100, a4, 100), rec(2, time.Second, false, a1, 100, a2, 100), rec(3, velocityWindow+2*time.Second, false, a1, 100)}, nil},
		// What is served now is always in the window, however old.
		{"the current record", []served{rec(1, 0, false, a1, 100, a2, 100, a3, 100, a4, 100), rec(2, 2*velocityWindow, false, a1, 100)}, []string{"I7"}},
		{"forced", []served{rec(1, 0, false, a1, 100, v6, 100), rec(2, time.Second, true, v6, 10)}, nil},
		{"unknown starts afresh", []served{rec(1, 0, false, a1, 100, v6, 100), unknown(time.Second), rec(3, 2*time.Second, false, a3, 100)}, nil},
		{"IPv4 emptied", []served{rec(1, 0, false, a1, 100, v6, 100), rec(2, time.Second, false, v6, 100, "2001:db8::2", 100)}, []string{"I2"}},
		{"IPv6 emptied and capacity halved", []served{rec(1, 0, false, a1, 100, v6, 100), rec(2, time.Second, false, a1, 90)}, []string{"I2", "I7"}},
		{"a repeat is judged once", []served{rec(1, 0, false, a1, 100, a2, 100), rec(2, time.Second, false, a3, 100), rec(2, time.Second, false, a3, 100)}, []string{"I7"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, v := range judgeSequence("api.dnsplan.test.", tt.records) {
				got = append(got, v.Invariant)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("violations %v, want %v", got, tt.want)
			}
		})
	}
}

// The sequence is the audit history's applies, in log order, whichever
// node was seen serving what: a replica that jumps from 1 to 3 is judged
// through 2.
func TestSequencesFromAudit(t *testing.T) {
	const ep = "api.dnsplan.test."
	c := newServedCheck()
	c.learn(ep, rec(1, 0, false, "192.0.2.1", 100, "192.0.2.2", 100, "192.0.2.3", 100, "192.0.2.4", 100))
	c.learn(ep, rec(2, 0, false, "192.0.2.1", 100, "192.0.2.2", 100))
	c.learn(ep, rec(3, 0, false, "192.0.2.2", 100, "192.0.2.3", 100))
	apply := func(i, gen uint64, outcome string) AuditEvent {
		return AuditEvent{Index: i, At: int64(i) * int64(time.Second), Kind: kindApply, Endpoint: ep, Generation: gen, Outcome: contract.ParseOutcome(outcome)}
	}
	events := []AuditEvent{apply(1, 1, "applied"), apply(2, 2, "applied"), apply(3, 2, "stale"), apply(4, 3, "applied")}
	if v, unknown := c.judge(events); len(v) != 0 || unknown != 0 {
		t.Errorf("1, 2, 3 (each within the limit of the highest): %v, %d unknown", v, unknown)
	}
	// Without 2 in the history, 3 keeps 200 of 1's 400: still allowed.
	// Without 1 and with 4 emptying IPv4's .1 and .2: flagged.
	c.learn(ep, rec(4, 0, false, "192.0.2.4", 100))
	events = append(events, apply(5, 4, "applied"))
	if v, _ := c.judge(events); len(v) != 1 || v[0].Invariant != "I7" {
		t.Errorf("4 keeps 0 of 3's 200 and 100 of 1's 400: %v, want one I7", v)
	}
	events = append(events, apply(6, 9, "applied"))
	if _, unknown := c.judge(events); unknown != 1 {
		t.Errorf("generation 9 was never learned: %d unknown, want 1", unknown)
	}
}

// The DNS check: a family answered before stays answered; a node started
// empty may not answer NXDOMAIN for what was applied before it started,
// from its first answer; another node gets nxGrace.
func TestDNSCheck(t *testing.T) {
	const ep = "api.dnsplan.test."
	newCheck := func() (*dnsCheck, *recorder) {
		r := newRecorder([]string{ep})
		r.op(Op{Endpoint: ep, Kind: "read", Out: 1, Known: true, Call: 0, Return: 0}, 0)
		return newDNSCheck(r, newServedCheck()), r
	}
	at := func(r *recorder, d time.Duration) time.Time { return r.start.Add(d) }
	count := func(r *recorder, inv string) int {
		_, _, vs, _ := r.snapshot()
		n := 0
		for _, v := range vs {
			if v.Invariant == inv {
				n++
			}
		}
		return n
	}

	c, r := newCheck()
	c.observe(probe.Observation{Node: "n1", Endpoint: ep, Sent: at(r, 100*time.Millisecond), A: 0, RcodeA: 3, RcodeAAAA: 3})
	if n := count(r, "I2"); n != 0 {
		t.Fatalf("a running node's NXDOMAIN within the grace is %d violations", n)
	}
	c.observe(probe.Observation{Node: "n1", Endpoint: ep, Sent: at(r, nxGrace+time.Second), RcodeA: 3, RcodeAAAA: 3})
	c.observe(probe.Observation{Node: "n1", Endpoint: ep, Sent: at(r, nxGrace+2*time.Second), RcodeA: 3, RcodeAAAA: 3})
	if n := count(r, "I2"); n != 1 {
		t.Fatalf("NXDOMAIN past the grace: %d violations, want 1 (once while it lasts)", n)
	}

	c, r = newCheck()
	c.started("n4") // after the endpoint was applied, at +0

	c.observe(probe.Observation{Node: "n4", Endpoint: ep, Sent: time.Now(), RcodeA: 3, RcodeAAAA: 3})
	if n := count(r, "I2"); n != 1 {
		t.Fatalf("a node started empty answered NXDOMAIN at once: %d violations, want 1", n)
	}

	// An answer holds exactly its generation's record; one whose record
	// comes later is judged at the end.
	c, r = newCheck()
	c.served.learn(ep, rec(1, 0, false, "192.0.2.1", 100, "192.0.2.2", 100, "2001:db8::1", 100))
	c.observe(probe.Observation{Node: "n1", Endpoint: ep, Sent: at(r, 10*time.Millisecond), HasGeneration: true, Exact: true, Generation: 1, A: 2, AAAA: 1})
	c.observe(probe.Observation{Node: "n1", Endpoint: ep, Sent: at(r, 20*time.Millisecond), HasGeneration: true, Exact: true, Generation: 1, A: 0, AAAA: 1})
	if n := count(r, "I7"); n != 1 {
		t.Fatalf("A missing from generation 1's answer: %d violations, want 1", n)
	}
	if a, ok := c.lastAnswer("n1", ep); !ok || a.gen != 1 {
		t.Errorf("last answer %+v, %v; want generation 1", a, ok)
	}
	c.observe(probe.Observation{Node: "n2", Endpoint: ep, Sent: at(r, 30*time.Millisecond), HasGeneration: true, Exact: true, Generation: 2, A: 1})
	c.served.learn(ep, rec(2, 0, false, "192.0.2.1", 100, "192.0.2.2", 100))
	if v, unjudged := c.judgePending(); len(v) != 1 || unjudged != 0 {
		t.Fatalf("generation 2 answered with 1 of its 2 addresses, judged at the end: %v, %d unjudged; want one violation", v, unjudged)
	}
}

// L2 during a fault: judged only if the fault outlasts the bound; a plan
// applied late, or never, is a violation; one refused by the cluster is
// not.
func TestCheckL2(t *testing.T) {
	ttl := time.Second
	bound := int64(l2Bound(ttl))
	s := int64(2 * time.Second)
	events := []Event{{At: s, Kind: string(FreezeEnactor)}, {At: s + bound + int64(time.Second), Kind: "heal"}}
	acked := map[uint64]int64{7: s + int64(500*time.Millisecond)}
	applied := func(ret int64) []Op {
		var ops []Op
		for _, ep := range endpoints {
			ops = append(ops, Op{Endpoint: ep, Kind: "read", Out: 7, Known: true, Return: ret})
		}
		return ops
	}
	if v := checkL2(events, applied(s+bound-1), acked, nil, ttl); len(v) != 0 {
		t.Errorf("applied in time: %v", v)
	}
	if v := checkL2(events, applied(s+bound+1), acked, nil, ttl); len(v) != len(endpoints) || v[0].Invariant != "L2" {
		t.Errorf("applied late: %v, want one L2 per endpoint", v)
	}
	refused := map[string][]refusal{}
	for _, ep := range endpoints {
		refused[ep] = []refusal{{gen: 7, at: s + int64(time.Second)}}
	}
	if v := checkL2(events, nil, acked, refused, ttl); len(v) != 0 {
		t.Errorf("refused by the cluster: %v", v)
	}
	short := []Event{events[0], {At: s + bound - 1, Kind: "heal"}}
	if v := checkL2(short, nil, acked, nil, ttl); len(v) != 0 {
		t.Errorf("healed before the bound, but judged: %v", v)
	}
	other := []Event{{At: s, Kind: string(KillLeader)}, events[1]}
	if v := checkL2(other, nil, acked, nil, ttl); len(v) != 0 {
		t.Errorf("a kill is not an L2 fault, but judged: %v", v)
	}
}
