// Package probe is a black-box checker that runs beside a cluster: in a
// bounded loop it asks every node's DNS and every node's replica (GetApplied
// with stale) what each applied endpoint serves, and records violations of
// the invariants a client can see, plus the windows in which a node did not
// answer:
//
//   - I1: on one node, an endpoint's generation in DNS (its _dnsplan TXT
//     record) goes back to an older one; or a linearizable GetApplied
//     returns an older generation than one that completed before it;
//   - I2: a node that has answered an endpoint with addresses later answers
//     it with none (an empty answer, NODATA or NXDOMAIN).
//
// SERVFAIL, timeouts and refused connections are unavailability, not
// violations: resolvers and clients go to another node.
package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/internal/dnsq"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Node is one cluster node's DNS server as the probe reaches it.
type Node struct {
	Name string
	DNS  string // host:port
}

// Cluster is the gRPC side; *client.Client implements it.
type Cluster interface {
	GetApplied(ctx context.Context, req *pb.GetAppliedRequest) (*pb.AppliedEndpoint, error)
	AllApplied(ctx context.Context, stale bool) ([]*pb.AppliedEndpoint, error)
}

// Config says what to probe and how often.
type Config struct {
	Nodes []Node
	// Endpoints to probe; when empty they are discovered with ListApplied
	// (needs Cluster) every DiscoverEvery.
	Endpoints []string
	// Cluster, if set, is also read linearizably each round.
	Cluster       Cluster
	Interval      time.Duration // between rounds; default 100ms
	Timeout       time.Duration // per query; default 500ms
	DiscoverEvery time.Duration // default 1s
	Logger        *slog.Logger
	// Observe, if set, is given every answer a node's DNS gave (SERVFAIL
	// and timeouts are not answers), so that a caller can judge what the
	// probe alone cannot: one address family at a time, or an answer
	// against what the cluster had applied when the query was sent. It
	// is called without the probe's lock held.
	Observe func(Observation)
}

// Observation is one node's DNS answer for one endpoint: its _dnsplan
// generation, and the addresses of each family.
type Observation struct {
	Node     string
	Endpoint string
	// Sent is when the first of the three queries was sent.
	Sent time.Time
	// Generation is from the _dnsplan TXT record; HasGeneration is false
	// when the node answered none.
	Generation    uint64
	HasGeneration bool
	// Exact: the node named the same generation before and after the A
	// and AAAA queries, so their addresses are exactly its records.
	Exact   bool
	A, AAAA int // addresses answered
	// RcodeA and RcodeAAAA are the answers' rcodes (NOERROR or NXDOMAIN).
	RcodeA, RcodeAAAA int
}

// Violation is one breach of an invariant, as observed.
type Violation struct {
	Invariant string    `json:"invariant"` // "I1" or "I2"
	Node      string    `json:"node"`
	Endpoint  string    `json:"endpoint"`
	Source    string    `json:"source"` // "dns" or "grpc"
	Detail    string    `json:"detail"`
	At        time.Time `json:"at"`
}

// Window is a stretch of time in which a node did not answer on a source.
// To is zero while it lasts.
type Window struct {
	Node   string    `json:"node"`
	Source string    `json:"source"`
	From   time.Time `json:"from"`
	To     time.Time `json:"to,omitzero"`
	Error  string    `json:"error"`
}

// Duration is the window's length, up to now if it still lasts.
func (w Window) Duration(now time.Time) time.Duration {
	if w.To.IsZero() {
		return now.Sub(w.From)
	}
	return w.To.Sub(w.From)
}

// Summary is what the probe has seen so far.
type Summary struct {
	Started     time.Time         `json:"started"`
	Elapsed     time.Duration     `json:"elapsed_ns"`
	Rounds      int               `json:"rounds"`
	Queries     int               `json:"queries"`
	Endpoints   []string          `json:"endpoints"`
	Generations map[string]uint64 `json:"generations"` // newest generation seen per endpoint
	Violations  []Violation       `json:"violations"`
	Unavailable []Window          `json:"unavailable"`
}

// Count returns the number of violations of one invariant.
func (s Summary) Count(invariant string) int {
	n := 0
	for _, v := range s.Violations {
		if v.Invariant == invariant {
			n++
		}
	}
	return n
}

// maxViolations bounds what is kept; the count goes on in the metrics of
// the log, and the first ones are the ones that explain a failure.
const maxViolations = 1000

// Prober runs the checks. Its methods are safe for concurrent use.
type Prober struct {
	cfg Config
	log *slog.Logger

	// mu guards everything below: rounds write it, Summary reads it.
	mu        sync.Mutex
	summary   Summary
	endpoints []string
	// last generation and "has answered with addresses" per node+source+endpoint.
	seen     map[string]uint64
	answered map[string]bool
	open     map[string]int // node+source → index of its open window in summary.Unavailable
}

// New checks the configuration and returns a prober.
func New(cfg Config) (*Prober, error) {
	if len(cfg.Nodes) == 0 {
		return nil, errors.New("probe: no nodes")
	}
	if len(cfg.Endpoints) == 0 && cfg.Cluster == nil {
		return nil, errors.New("probe: no endpoints and no cluster to discover them from")
	}
	for i := range cfg.Nodes {
		if cfg.Nodes[i].Name == "" {
			cfg.Nodes[i].Name = fmt.Sprintf("node%d", i+1)
		}
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 500 * time.Millisecond
	}
	if cfg.DiscoverEvery <= 0 {
		cfg.DiscoverEvery = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	endpoints := make([]string, len(cfg.Endpoints))
	for i, e := range cfg.Endpoints {
		endpoints[i] = dns.CanonicalName(e)
	}
	return &Prober{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "probe"),
		summary:   Summary{Generations: map[string]uint64{}},
		endpoints: endpoints,
		seen:      map[string]uint64{},
		answered:  map[string]bool{},
		open:      map[string]int{},
	}, nil
}

// Run probes until ctx ends, then closes any open windows and returns nil.
func (p *Prober) Run(ctx context.Context) error {
	p.mu.Lock()
	p.summary.Started = time.Now()
	p.mu.Unlock()
	var discovered time.Time
	tick := time.NewTicker(p.cfg.Interval)
	defer tick.Stop()
	for {
		if p.cfg.Cluster != nil && len(p.cfg.Endpoints) == 0 && time.Since(discovered) >= p.cfg.DiscoverEvery {
			p.discover(ctx)
			discovered = time.Now()
		}
		p.round(ctx)
		select {
		case <-ctx.Done():
			p.mu.Lock()
			now := time.Now()
			for key, i := range p.open {
				p.summary.Unavailable[i].To = now
				delete(p.open, key)
			}
			p.summary.Elapsed = now.Sub(p.summary.Started)
			p.mu.Unlock()
			return nil
		case <-tick.C:
		}
	}
}

// discover learns applied endpoints from any node's replica.
func (p *Prober) discover(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*p.cfg.Timeout)
	defer cancel()
	applied, err := p.cfg.Cluster.AllApplied(ctx, true)
	if err != nil {
		p.log.Debug("discovering endpoints", "err", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range applied {
		if !slices.Contains(p.endpoints, a.GetEndpoint()) {
			p.endpoints = append(p.endpoints, a.GetEndpoint())
		}
	}
	slices.Sort(p.endpoints)
}

// round asks every node's DNS about every endpoint once, nodes in
// parallel, and the cluster once per endpoint.
func (p *Prober) round(ctx context.Context) {
	p.mu.Lock()
	endpoints := slices.Clone(p.endpoints)
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range p.cfg.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.probeDNS(ctx, n, endpoints)
		}()
	}
	if p.cfg.Cluster != nil {
		// Sequential on purpose: each read starts after the previous one
		// completed, so linearizability requires it to be no older.
		p.probeCluster(ctx, endpoints)
	}
	wg.Wait()
	p.mu.Lock()
	p.summary.Rounds++
	p.summary.Elapsed = time.Since(p.summary.Started)
	p.mu.Unlock()
}

// errUnavailable marks answers that say "ask elsewhere", not "nothing".
var errUnavailable = errors.New("unavailable")

func (p *Prober) query(ctx context.Context, addr, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	r, err := dnsq.Exchange(ctx, m, addr, p.cfg.Timeout)
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("%w: rcode %s", errUnavailable, dns.RcodeToString[r.Rcode])
	}
	return r, nil
}

func (p *Prober) probeDNS(ctx context.Context, n Node, endpoints []string) {
	for _, ep := range endpoints {
		sent := time.Now()
		txt, err := p.query(ctx, n.DNS, "_dnsplan."+ep, dns.TypeTXT)
		var a, aaaa *dns.Msg
		if err == nil {
			a, err = p.query(ctx, n.DNS, ep, dns.TypeA)
		}
		if err == nil {
			aaaa, err = p.query(ctx, n.DNS, ep, dns.TypeAAAA)
		}
		// The generation again: if it did not move, the addresses are
		// exactly that generation's (a node's view only moves forward).
		var after *dns.Msg
		if err == nil {
			after, err = p.query(ctx, n.DNS, "_dnsplan."+ep, dns.TypeTXT)
		}
		if ended(ctx) {
			return
		}
		p.mu.Lock()
		p.summary.Queries += 4
		if err != nil {
			p.unavailable(n.Name, "dns", err)
			p.mu.Unlock()
			continue
		}
		p.available(n.Name, "dns")
		addrs := countAddrs(a) + countAddrs(aaaa)
		if gen, ok := txtGeneration(txt); ok {
			p.observe(n.Name, "dns", ep, gen)
		}
		key := n.Name + "|dns|" + ep
		switch {
		case addrs > 0:
			p.answered[key] = true
		case p.answered[key]:
			p.violate(Violation{Invariant: "I2", Node: n.Name, Endpoint: ep, Source: "dns",
				Detail: fmt.Sprintf("empty answer (A rcode %s, AAAA rcode %s) after answering with addresses",
					dns.RcodeToString[a.Rcode], dns.RcodeToString[aaaa.Rcode])})
		}
		p.mu.Unlock()
		if p.cfg.Observe != nil {
			gen, ok := txtGeneration(txt)
			genAfter, okAfter := txtGeneration(after)
			p.cfg.Observe(Observation{Node: n.Name, Endpoint: ep, Sent: sent, Generation: gen, HasGeneration: ok,
				Exact: ok && okAfter && gen == genAfter,
				A:     countAddrs(a), AAAA: countAddrs(aaaa), RcodeA: a.Rcode, RcodeAAAA: aaaa.Rcode})
		}
	}
}

func (p *Prober) probeCluster(ctx context.Context, endpoints []string) {
	for _, ep := range endpoints {
		qctx, cancel := context.WithTimeout(ctx, 4*p.cfg.Timeout)
		a, err := p.cfg.Cluster.GetApplied(qctx, &pb.GetAppliedRequest{Endpoint: ep})
		cancel()
		if ended(ctx) {
			return
		}
		p.mu.Lock()
		p.summary.Queries++
		key := "cluster|grpc|" + ep
		switch {
		case status.Code(err) == codes.NotFound:
			p.available("cluster", "grpc")
			if p.seen[key] > 0 {
				p.violate(Violation{Invariant: "I1", Node: "cluster", Endpoint: ep, Source: "grpc",
					Detail: fmt.Sprintf("applied record gone after generation %d", p.seen[key])})
			}
		case err != nil:
			p.unavailable("cluster", "grpc", err)
		default:
			p.available("cluster", "grpc")
			p.observe("cluster", "grpc", ep, a.GetGeneration())
			if !hasWeight(a) {
				p.violate(Violation{Invariant: "I2", Node: "cluster", Endpoint: ep, Source: "grpc",
					Detail: fmt.Sprintf("generation %d has no target of weight > 0", a.GetGeneration())})
			}
		}
		p.mu.Unlock()
	}
}

// observe records a generation seen on one node and checks I1. mu held.
func (p *Prober) observe(node, source, ep string, gen uint64) {
	key := node + "|" + source + "|" + ep
	if prev := p.seen[key]; gen < prev {
		p.violate(Violation{Invariant: "I1", Node: node, Endpoint: ep, Source: source,
			Detail: fmt.Sprintf("generation went back from %d to %d", prev, gen)})
	} else {
		p.seen[key] = gen
	}
	if gen > p.summary.Generations[ep] {
		p.summary.Generations[ep] = gen
	}
}

func (p *Prober) violate(v Violation) {
	v.At = time.Now()
	p.log.Error("invariant violated", "invariant", v.Invariant, "node", v.Node, "endpoint", v.Endpoint, "source", v.Source, "detail", v.Detail)
	if len(p.summary.Violations) < maxViolations {
		p.summary.Violations = append(p.summary.Violations, v)
	}
}

func (p *Prober) unavailable(node, source string, err error) {
	key := node + "|" + source
	if _, ok := p.open[key]; ok {
		return
	}
	p.log.Warn("node not answering", "node", node, "source", source, "err", err)
	p.summary.Unavailable = append(p.summary.Unavailable, Window{Node: node, Source: source, From: time.Now(), Error: err.Error()})
	p.open[key] = len(p.summary.Unavailable) - 1
}

func (p *Prober) available(node, source string) {
	key := node + "|" + source
	if i, ok := p.open[key]; ok {
		p.summary.Unavailable[i].To = time.Now()
		p.log.Info("node answering again", "node", node, "source", source, "after", p.summary.Unavailable[i].Duration(time.Now()))
		delete(p.open, key)
	}
}

// Summary returns a copy of what the probe has seen so far.
func (p *Prober) Summary() Summary {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.summary
	s.Endpoints = slices.Clone(p.endpoints)
	s.Generations = make(map[string]uint64, len(p.summary.Generations))
	for k, v := range p.summary.Generations {
		s.Generations[k] = v
	}
	s.Violations = slices.Clone(p.summary.Violations)
	s.Unavailable = slices.Clone(p.summary.Unavailable)
	if !s.Started.IsZero() && len(p.open) > 0 {
		s.Elapsed = time.Since(s.Started)
	}
	return s
}

// ended reports whether ctx is over, including a deadline that has passed
// but whose timer has not yet fired: a query cut short by the end of the
// run is not an outage.
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

func countAddrs(m *dns.Msg) int {
	n := 0
	for _, rr := range m.Answer {
		switch rr.(type) {
		case *dns.A, *dns.AAAA:
			n++
		}
	}
	return n
}

// txtGeneration reads "generation=N ..." from the _dnsplan TXT answer.
func txtGeneration(m *dns.Msg) (uint64, bool) {
	for _, rr := range m.Answer {
		txt, ok := rr.(*dns.TXT)
		if !ok {
			continue
		}
		for _, field := range strings.Fields(strings.Join(txt.Txt, " ")) {
			var gen uint64
			if _, err := fmt.Sscanf(field, "generation=%d", &gen); err == nil {
				return gen, true
			}
		}
	}
	return 0, false
}

func hasWeight(a *pb.AppliedEndpoint) bool {
	for _, t := range a.GetTargets() {
		if t.GetWeight() > 0 {
			return true
		}
	}
	return false
}
