package chaos

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsplan/dnsplan/probe"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// The velocity rule the checker holds applied records to: the cluster's
// defaults (cluster.Config.MaxCapacityDrop, the --velocity-window).
const (
	velocityLimit  = 0.5
	velocityWindow = 60 * time.Second
)

// served is what one node's replica serves for one endpoint at one
// generation: each address of weight above zero, and its weight.
type served struct {
	gen    uint64
	at     int64 // when the replica check first saw it
	weight map[string]uint32
	forced bool // its plan was submitted with force
}

func servedOf(a *pb.AppliedEndpoint, plan *pb.Plan, at int64) served {
	s := served{gen: a.GetGeneration(), at: at, weight: map[string]uint32{}, forced: plan.GetForced()}
	for _, t := range a.GetTargets() {
		if t.GetWeight() > 0 {
			s.weight[t.GetAddress()] += t.GetWeight()
		}
	}
	return s
}

func (s served) total() uint64 {
	var n uint64
	for _, w := range s.weight {
		n += uint64(w)
	}
	return n
}

// families reports whether s serves an IPv4 and an IPv6 address.
func (s served) families() (v4, v6 bool) {
	for a := range s.weight {
		if ip, err := netip.ParseAddr(a); err == nil {
			v4, v6 = v4 || ip.Is4(), v6 || ip.Is6()
		}
	}
	return v4, v6
}

// kept is how much of p's capacity s still serves: per address, the
// smaller of the two weights. An address p served that s does not, even
// one replaced by another at the same weight, counts as removed.
func kept(p, s served) uint64 {
	var n uint64
	for a, w := range p.weight {
		n += uint64(min(w, s.weight[a]))
	}
	return n
}

// servedCheck judges, per node and endpoint, the sequence of applied
// records the replica check sees:
//
//   - I2 per family: once the endpoint served an IPv4 (IPv6) address on
//     that node, every later record serves one, unless its plan was
//     forced;
//   - I7 velocity: a record that was not forced keeps at least
//     1-velocityLimit of the capacity of the highest-capacity record of
//     the last velocityWindow, counted by kept.
//
// A forced record starts both afresh.
type servedCheck struct {
	// mu guards everything below: the replica check feeds it, the DNS
	// check asks it which generations were forced.
	mu      sync.Mutex
	history map[string][]served // node|endpoint → records seen, oldest first
	family  map[string][2]bool  // node|endpoint → has served IPv4, IPv6
	forced  map[uint64]bool     // generations whose plan was forced
}

func newServedCheck() *servedCheck {
	return &servedCheck{history: map[string][]served{}, family: map[string][2]bool{}, forced: map[uint64]bool{}}
}

// wasForced reports whether generation gen was seen forced.
func (c *servedCheck) wasForced(gen uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.forced[gen]
}

// see judges record s of endpoint ep on node; it returns the violations
// it finds (each once: a record is judged when first seen).
func (c *servedCheck) see(node, ep string, s served) []Violation {
	key := node + "|" + ep
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.history[key]
	if len(h) > 0 && h[len(h)-1].gen == s.gen {
		return nil
	}
	if s.forced {
		c.forced[s.gen] = true
		c.history[key] = []served{s}
		v4, v6 := s.families()
		c.family[key] = [2]bool{v4, v6}
		return nil
	}
	var found []Violation
	v4, v6 := s.families()
	fam := c.family[key]
	for i, name := range []string{"IPv4 (A)", "IPv6 (AAAA)"} {
		has := []bool{v4, v6}[i]
		if fam[i] && !has {
			found = append(found, Violation{Invariant: "I2", Source: "replica", Node: node, Endpoint: ep, At: s.at,
				Detail: fmt.Sprintf("generation %d, not forced, serves no %s address, which the endpoint served before", s.gen, name)})
		}
		fam[i] = fam[i] || has
	}
	c.family[key] = fam
	// The highest-capacity record of the window, the newest of equals.
	var high *served
	for i := range h {
		if s.at-h[i].at > int64(velocityWindow) {
			continue
		}
		if high == nil || h[i].total() >= high.total() {
			high = &h[i]
		}
	}
	if high != nil && float64(kept(*high, s)) < (1-velocityLimit)*float64(high.total()) {
		found = append(found, Violation{Invariant: "I7", Source: "replica", Node: node, Endpoint: ep, At: s.at,
			Detail: fmt.Sprintf("generation %d, not forced, keeps capacity %d of the %d generation %d served %s before (a drop over %.0f%%)",
				s.gen, kept(*high, s), high.total(), high.gen, fmtNanos(s.at-high.at), 100*velocityLimit)})
	}
	c.history[key] = append(h, s)
	return found
}

// dnsCheck judges the probes' DNS answers beyond what the probe itself
// checks:
//
//   - I2 per family: a node that answered an endpoint's A (AAAA) query
//     with addresses never answers it with none, unless the generation it
//     serves was forced;
//
//   - I2 against the cluster: a node started with no data (joined, or
//     replaced) never answers NXDOMAIN or no address at all for an
//     endpoint applied before it started, even though it never answered
//     it before: it must say SERVFAIL until it can serve. Every other
//     node has nxGrace after an endpoint is first applied to show it (a
//     follower applies a commit a little after the leader).
//
//   - I7 as DNS shows it: every target of an observed endpoint has the
//     same capacity, so the addresses a node answers measure the capacity
//     it serves; an answer not forced with addresses must hold at least
//     1-velocityLimit of the most the node answered in the last
//     velocityWindow.
//
// It also keeps each node's last answer, for the L2 check.
type dnsCheck struct {
	rec    *recorder
	served *servedCheck
	// mu guards everything below: the probes call observe concurrently.
	mu       sync.Mutex
	answered map[string][2]bool // node|endpoint → has answered A, AAAA
	failing  map[string]bool    // node|endpoint|what → a breach reported and not over
	last     map[string]dnsAnswer
	fresh    map[string]int64   // node → when it last started with no data
	most     map[string][]count // node|endpoint → address counts answered, oldest first
}

// count is how many addresses a node answered for an endpoint, and when.
type count struct {
	at int64
	n  int
}

// nxGrace is how long after an endpoint is first applied a running node
// may still not know it.
const nxGrace = time.Second

// started notes that node starts now with no data.
func (c *dnsCheck) started(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fresh[node] = c.rec.now()
}

// dnsAnswer is a node's last answer for an endpoint.
type dnsAnswer struct {
	sent int64
	gen  uint64
}

func newDNSCheck(rec *recorder, served *servedCheck) *dnsCheck {
	return &dnsCheck{rec: rec, served: served, answered: map[string][2]bool{}, failing: map[string]bool{}, last: map[string]dnsAnswer{}, fresh: map[string]int64{}, most: map[string][]count{}}
}

func (c *dnsCheck) observe(o probe.Observation) {
	sent := int64(o.Sent.Sub(c.rec.start))
	appliedAt, applied := c.rec.appliedSince(o.Endpoint)
	forced := o.HasGeneration && c.served.wasForced(o.Generation)
	key := o.Node + "|" + o.Endpoint
	var found []Violation
	c.mu.Lock()
	if o.HasGeneration {
		c.last[key] = dnsAnswer{sent: sent, gen: o.Generation}
	}
	breach := func(what string, bad bool, v Violation) {
		k := key + "|" + what
		switch {
		case bad && !c.failing[k]:
			c.failing[k] = true
			found = append(found, v)
		case !bad:
			c.failing[k] = false
		}
	}
	none := o.A+o.AAAA == 0
	fresh, isFresh := c.fresh[o.Node]
	known := applied && (appliedAt+int64(nxGrace) < sent || isFresh && appliedAt < fresh && fresh < sent)
	breach("applied", known && none, Violation{Invariant: "I2", Source: "dns", Node: o.Node, Endpoint: o.Endpoint, At: sent,
		Detail: fmt.Sprintf("answered %s with no address (A rcode %s, AAAA rcode %s) though the endpoint was applied at %s, before the query (SERVFAIL is the answer of a node that cannot serve yet)",
			o.Endpoint, dns.RcodeToString[o.RcodeA], dns.RcodeToString[o.RcodeAAAA], fmtNanos(appliedAt))})
	ans := c.answered[key]
	for i, name := range []string{"A", "AAAA"} {
		n := []int{o.A, o.AAAA}[i]
		breach(name, ans[i] && n == 0 && !forced && !none, Violation{Invariant: "I2", Source: "dns", Node: o.Node, Endpoint: o.Endpoint, At: sent,
			Detail: fmt.Sprintf("no %s address (generation %d) after answering %s with one", name, o.Generation, name)})
		ans[i] = ans[i] || n > 0
	}
	c.answered[key] = ans
	if n := o.A + o.AAAA; n > 0 {
		h := c.most[key]
		for len(h) > 0 && sent-h[0].at > int64(velocityWindow) {
			h = h[1:]
		}
		high := count{}
		for _, x := range h {
			if x.n >= high.n {
				high = x
			}
		}
		breach("velocity", !forced && float64(n) < (1-velocityLimit)*float64(high.n), Violation{Invariant: "I7", Source: "dns", Node: o.Node, Endpoint: o.Endpoint, At: sent,
			Detail: fmt.Sprintf("answered %d address(es) (generation %d), not forced, %s after answering %d: a drop over %.0f%%", n, o.Generation, fmtNanos(sent-high.at), high.n, 100*velocityLimit)})
		if forced {
			h = nil
		}
		c.most[key] = append(h, count{at: sent, n: n})
	}
	c.mu.Unlock()
	for _, v := range found {
		c.rec.violate(v)
	}
}

// lastAnswer is node's last DNS answer for ep with a generation.
func (c *dnsCheck) lastAnswer(node, ep string) (dnsAnswer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.last[node+"|"+ep]
	return a, ok
}
