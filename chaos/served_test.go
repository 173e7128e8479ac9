package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/dnsplan/dnsplan/probe"
)

func rec(gen uint64, at time.Duration, forced bool, weights ...any) served {
	s := served{gen: gen, at: int64(at), weight: map[string]uint32{}, forced: forced}
	for i := 0; i < len(weights); i += 2 {
		s.weight[weights[i].(string)] = uint32(weights[i+1].(int))
	}
	return s
}

// The served check flags what the cluster must refuse: a family emptied,
// capacity dropped below half of the window's highest (replacing an
// address counts as removing it), and nothing that was forced.
func TestServedCheck(t *testing.T) {
	const a1, a2, a3, a4, v6 = "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "2001:db8::1"
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
		{"outside the window", []served{rec(1, 0, false, a1, 100, a2, 100, a3, 100, a4, 100), rec(2, velocityWindow+time.Second, false, a1, 100)}, nil},
		{"forced", []served{rec(1, 0, false, a1, 100, v6, 100), rec(2, time.Second, true, v6, 10)}, nil},
		{"IPv4 emptied", []served{rec(1, 0, false, a1, 100, v6, 100), rec(2, time.Second, false, v6, 100, "2001:db8::2", 100)}, []string{"I2"}},
		{"IPv6 emptied and capacity halved", []served{rec(1, 0, false, a1, 100, v6, 100), rec(2, time.Second, false, a1, 90)}, []string{"I2", "I7"}},
		{"a repeat is judged once", []served{rec(1, 0, false, a1, 100, a2, 100), rec(2, time.Second, false, a3, 100), rec(2, time.Second, false, a3, 100)}, []string{"I7"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newServedCheck()
			var got []string
			for _, r := range tt.records {
				for _, v := range c.see("n1", "api.dnsplan.test.", r) {
					got = append(got, v.Invariant)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("violations %v, want %v", got, tt.want)
			}
		})
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

	c, r = newCheck()
	c.observe(probe.Observation{Node: "n1", Endpoint: ep, Sent: at(r, 10*time.Millisecond), HasGeneration: true, Generation: 1, A: 2, AAAA: 1})
	c.observe(probe.Observation{Node: "n1", Endpoint: ep, Sent: at(r, 20*time.Millisecond), HasGeneration: true, Generation: 2, A: 0, AAAA: 2})
	if n := count(r, "I2"); n != 1 {
		t.Fatalf("A emptied: %d violations, want 1", n)
	}
	if a, ok := c.lastAnswer("n1", ep); !ok || a.gen != 2 {
		t.Errorf("last answer %+v, %v; want generation 2", a, ok)
	}

	// 4 addresses, then 2 (the limit), then 1: a drop over half.
	c, r = newCheck()
	for i, n := range []int{4, 2, 1} {
		c.observe(probe.Observation{Node: "n1", Endpoint: ep, Sent: at(r, time.Duration(i+1)*time.Millisecond), HasGeneration: true, Generation: uint64(i + 1), A: n})
	}
	if n := count(r, "I7"); n != 1 {
		t.Fatalf("4, 2, then 1 address: %d velocity violations, want 1", n)
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
