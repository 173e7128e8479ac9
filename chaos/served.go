package chaos

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
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

// served is one endpoint's record at one generation: each address of
// weight above zero, and its weight. In a sequence, at is when the state
// machine applied it (its time, from the audit history).
type served struct {
	gen uint64
	// at is state-machine time (the proposing leader's clock), what the
	// velocity window is measured in; seen is run time, where a breach
	// is reported (the two differ by every clock offset of the run).
	at     int64
	seen   int64
	weight map[string]uint32
	forced bool // its plan was submitted with force
	// unknown marks an apply whose record the checker never learned:
	// the sequence is judged afresh after it.
	unknown bool
}

// servedOf is ep's record in plan: what an apply of plan writes.
func servedOf(ep *pb.EndpointPlan, plan *pb.Plan) served {
	s := served{gen: plan.GetGeneration(), weight: map[string]uint32{}, forced: plan.GetForced()}
	for _, t := range ep.GetTargets() {
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

// families counts the IPv4 and IPv6 addresses s serves.
func (s served) families() (v4, v6 int) {
	for a := range s.weight {
		if ip, err := netip.ParseAddr(a); err == nil {
			if ip.Is4() {
				v4++
			} else {
				v6++
			}
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

// servedCheck learns the record of every plan any replica stores, and
// judges I2 per family and I7 on each endpoint's applied sequence: every
// apply the audit history records, in log order, at the state machine's
// time. Every replica goes through that one sequence; what one node
// serves is judged against it by the DNS check (an answer serves the
// record of the generation it names). Sampling what each node serves
// instead would misjudge a node that applies several generations between
// two samples (a joining node catching up, a follower after a pause):
// each step was allowed, their sum need not be.
type servedCheck struct {
	// mu guards records: the replica check feeds it, the DNS check and
	// the final judgement read it.
	mu      sync.Mutex
	records map[string]map[uint64]served // endpoint → generation → record
}

func newServedCheck() *servedCheck {
	return &servedCheck{records: map[string]map[uint64]served{}}
}

// knows reports whether the records of generation gen were learned.
func (c *servedCheck) knows(ep string, gen uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.records[ep][gen]
	return ok
}

// learn notes ep's record at s.gen (the first one learned stands: a
// stored plan never changes).
func (c *servedCheck) learn(ep string, s served) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.records[ep]
	if m == nil {
		m = map[uint64]served{}
		c.records[ep] = m
	}
	if _, ok := m[s.gen]; !ok {
		m[s.gen] = s
	}
}

// record returns ep's record at gen, if learned.
func (c *servedCheck) record(ep string, gen uint64) (served, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.records[ep][gen]
	return s, ok
}

// sequences builds each observed endpoint's applied sequence from the
// audit history: every apply with outcome applied (an idempotent retry
// records nothing), oldest first. A gap in the history, or an apply whose
// plan no replica was seen storing, enters as an unknown step.
func (c *servedCheck) sequences(audit []AuditEvent) map[string][]served {
	out := map[string][]served{}
	for _, e := range audit {
		if e.Gap {
			for ep, seq := range out {
				out[ep] = append(seq, served{unknown: true, at: e.At, seen: e.Seen})
			}
		}
		if (e.Kind != kindApply && e.Kind != kindLegacyApply) || e.Outcome != outcomeApplied || !slices.Contains(endpoints, e.Endpoint) {
			continue
		}
		s, ok := c.record(e.Endpoint, e.Generation)
		if !ok {
			s = served{gen: e.Generation, unknown: true}
		}
		s.at, s.seen = e.At, e.Seen
		out[e.Endpoint] = append(out[e.Endpoint], s)
	}
	return out
}

// judge checks the audit history's applied sequences.
func (c *servedCheck) judge(audit []AuditEvent) (found []Violation, unknown int) {
	seqs := c.sequences(audit)
	for _, ep := range slices.Sorted(maps.Keys(seqs)) {
		for _, s := range seqs[ep] {
			if s.unknown {
				unknown++
			}
		}
		found = append(found, judgeSequence(ep, seqs[ep])...)
	}
	return found, unknown
}

// judgeSequence holds one endpoint's applied sequence to the rules the
// state machine enforces on every apply that was not forced:
//
//   - I2 per family: a record serves an IPv4 (IPv6) address if the one
//     before it did;
//   - I7 velocity: a record keeps at least 1-velocityLimit of the
//     capacity of every highest-capacity record served within
//     velocityWindow before it (a record is served until the next one is
//     applied), counted by kept.
//
// A forced or unknown record starts the judgement afresh.
func judgeSequence(ep string, seq []served) []Violation {
	var found []Violation
	var h []served // the records since the last fresh start
	for _, s := range seq {
		if s.unknown {
			h = nil
			continue
		}
		if s.forced {
			h = []served{s}
			continue
		}
		if n := len(h); n > 0 {
			prev := h[n-1]
			if prev.gen == s.gen {
				continue
			}
			p4, p6 := prev.families()
			s4, s6 := s.families()
			for _, f := range []struct {
				name       string
				before, at int
			}{{"IPv4 (A)", p4, s4}, {"IPv6 (AAAA)", p6, s6}} {
				if f.before > 0 && f.at == 0 {
					found = append(found, Violation{Invariant: "I2", Source: "audit", Endpoint: ep, At: s.seen,
						Detail: fmt.Sprintf("generation %d, not forced, was applied with no %s address after generation %d served one", s.gen, f.name, prev.gen)})
				}
			}
		}
		var within []served
		var highest uint64
		for i, r := range h {
			if i+1 < len(h) && s.at-h[i+1].at >= int64(velocityWindow) {
				continue
			}
			within = append(within, r)
			highest = max(highest, r.total())
		}
		for _, r := range within {
			if r.total() != highest || highest == 0 {
				continue
			}
			if k := kept(r, s); float64(k) < (1-velocityLimit)*float64(highest) {
				found = append(found, Violation{Invariant: "I7", Source: "audit", Endpoint: ep, At: s.seen,
					Detail: fmt.Sprintf("generation %d, not forced, was applied keeping capacity %d of the %d generation %d served %s before (a drop over %.0f%%)",
						s.gen, k, highest, r.gen, time.Duration(s.at-r.at).Round(time.Millisecond), 100*velocityLimit)})
				break
			}
		}
		h = append(h, s)
	}
	return found
}

// dnsCheck judges the probes' DNS answers beyond what the probe itself
// checks:
//
//   - I2 against the cluster: a node started with no data (joined, or
//     replaced) never answers NXDOMAIN or no address at all for an
//     endpoint applied before it started, even though it never answered
//     it before: it must say SERVFAIL until it can serve. Every other
//     node has nxGrace after an endpoint is first applied to show it (a
//     follower applies a commit a little after the leader).
//
//   - DNS serves the applied record: an answer that names a generation
//     (the same before and after its A and AAAA queries) holds exactly the IPv4 and IPv6 addresses the endpoint's record at
//     that generation serves. With I2 and I7 judged on the applied
//     sequence (servedCheck), this is I2 per family and I7 as DNS shows
//     them; a breach is reported as I7. An answer whose record is not
//     learned yet is judged at the end.
//
// It also keeps each node's last answer, for the L2 check.
type dnsCheck struct {
	rec    *recorder
	served *servedCheck
	// mu guards everything below: the probes call observe concurrently.
	mu      sync.Mutex
	failing map[string]bool // node|endpoint|what → a breach reported and not over
	last    map[string]dnsAnswer
	fresh   map[string]int64 // node → when it last started with no data
	// pending are answers whose record was not learned when they came,
	// judged at the end (at most maxPending, the first ones).
	pending []answered
}

// answered is one answer naming a generation.
type answered struct {
	node, ep string
	sent     int64
	gen      uint64
	a, aaaa  int
}

const maxPending = 10000

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
	return &dnsCheck{rec: rec, served: served, failing: map[string]bool{}, last: map[string]dnsAnswer{}, fresh: map[string]int64{}}
}

func (c *dnsCheck) observe(o probe.Observation) {
	sent := int64(o.Sent.Sub(c.rec.start))
	appliedAt, applied := c.rec.appliedSince(o.Endpoint)
	key := o.Node + "|" + o.Endpoint
	var found []Violation
	c.mu.Lock()
	if o.HasGeneration {
		c.last[key] = dnsAnswer{sent: sent, gen: o.Generation}
	}
	none := o.A+o.AAAA == 0
	fresh, isFresh := c.fresh[o.Node]
	known := applied && (appliedAt+int64(nxGrace) < sent || isFresh && appliedAt < fresh && fresh < sent)
	if c.breach(key+"|applied", known && none) {
		found = append(found, Violation{Invariant: "I2", Source: "dns", Node: o.Node, Endpoint: o.Endpoint, At: sent,
			Detail: fmt.Sprintf("answered %s with no address (A rcode %s, AAAA rcode %s) though the endpoint was applied at %s, before the query (SERVFAIL is the answer of a node that cannot serve yet)",
				o.Endpoint, dns.RcodeToString[o.RcodeA], dns.RcodeToString[o.RcodeAAAA], fmtNanos(appliedAt))})
	}
	if o.Exact {
		a := answered{node: o.Node, ep: o.Endpoint, sent: sent, gen: o.Generation, a: o.A, aaaa: o.AAAA}
		if v, judged := c.judgeAnswer(a); !judged {
			if len(c.pending) < maxPending {
				c.pending = append(c.pending, a)
			}
		} else if v != nil {
			found = append(found, *v)
		}
	}
	c.mu.Unlock()
	for _, v := range found {
		c.rec.violate(v)
	}
}

// breach reports whether a breach under key starts now (bad, and not
// already bad), so that a lasting breach is reported once. c.mu is held.
func (c *dnsCheck) breach(key string, bad bool) bool {
	start := bad && !c.failing[key]
	c.failing[key] = bad
	return start
}

// judgeAnswer holds a to the record of its generation, if learned.
// c.mu is held.
func (c *dnsCheck) judgeAnswer(a answered) (*Violation, bool) {
	s, ok := c.served.record(a.ep, a.gen)
	if !ok {
		return nil, false
	}
	v4, v6 := s.families()
	if !c.breach(a.node+"|"+a.ep+"|record", a.a != v4 || a.aaaa != v6) {
		return nil, true
	}
	return &Violation{Invariant: "I7", Source: "dns", Node: a.node, Endpoint: a.ep, At: a.sent,
		Detail: fmt.Sprintf("answered %d IPv4 and %d IPv6 address(es) for generation %d, whose applied record serves %d and %d",
			a.a, a.aaaa, a.gen, v4, v6)}, true
}

// judgePending judges the answers whose record was learned after they
// came; it returns how many stay unjudged (their plan was never seen).
func (c *dnsCheck) judgePending() (found []Violation, unjudged int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.pending {
		v, judged := c.judgeAnswer(a)
		switch {
		case !judged:
			unjudged++
		case v != nil:
			found = append(found, *v)
		}
	}
	c.pending = nil
	return found, unjudged
}

// lastAnswer is node's last DNS answer for ep with a generation.
func (c *dnsCheck) lastAnswer(node, ep string) (dnsAnswer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.last[node+"|"+ep]
	return a, ok
}
