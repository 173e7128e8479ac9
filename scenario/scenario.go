// Package scenario replays, on real nodes, the interleaving that emptied
// DynamoDB's regional endpoint at AWS in October 2025 (docs/DESIGN.md section
// 1), against the legacy design and the fixed one, and reports what every
// node's DNS answered at each step.
//
// A run starts a fresh three-node cluster in this process (loopback,
// ephemeral ports, mutual TLS with a CA of its own, a temporary data
// directory, DNS on every node), then drives the actors (a planner, a
// delayed enactor az-a and a second enactor az-b, each with a certificate
// naming it) one explicit step at a time through the same client API the
// real programs use: the order of the race is fixed by the script, not by
// timing. After each step it waits, with a bound, until every node has
// applied the step and its DNS answers from that state, asks every node's
// DNS for the regional endpoint, and lets the invariant checker (package
// probe, running beside the script all along) take a round. At the end it
// runs the real enactor loops on a new plan to see whether the system heals
// by itself.
//
// The verdict comes from what was observed, never from the script: an
// empty answer after addresses (I2), a generation going back on a node
// (I1), and whether a later plan was applied automatically (L3). The
// legacy design is expected to show all three failures of the AWS event;
// the fixed design none of them. A run whose observations differ from its
// design's expectation is reported as such, so the checker can fail.
//
// A second scenario, broken-planner (brokenplanner.go), runs on the fixed
// design only: real enactor loops apply a healthy plan of twelve
// endpoints, then the planner, its source broken, submits a plan that
// points half of them at one wrong address. The cluster is expected to
// freeze on doubt, every node's DNS to keep answering the old records, and
// an operator's review (the diff), rollback and unfreeze to restore
// service without the bad plan ever being served; the verdict judges
// every DNS answer seen.
package scenario

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/probe"
)

// The scenarios, by the names `dnsplan scenario` takes.
const (
	AWS2025       = "aws-2025"
	BrokenPlanner = "broken-planner"
)

// The endpoints of the replayed plans, like the many endpoints one AWS
// regional plan covered. Regional is listed first: it is the one the
// delayed enactor writes first, and whose DNS answers the timeline shows.
const (
	Regional = "api.dnsplan.test."
	fips     = "api-fips.dnsplan.test."
	ipv6     = "api-v6.dnsplan.test."
	account  = "111122223333.api.dnsplan.test."
)

// Replay parameters: the numbers of the AWS story, small enough to run in
// seconds.
const (
	// newestBeforeRace is the generation enactor az-b applies while az-a
	// is delayed on generation 2.
	newestBeforeRace = 12
	// keepGenerations is both clean-ups' setting: legacy keep_generations
	// and fixed keep_last.
	keepGenerations = 5
	// leaseTTL is the fixed enactors' lease TTL: short, so az-a's lease
	// expires quickly while it is paused.
	leaseTTL = time.Second
)

// Defaults for Options.
const (
	DefaultStepTimeout     = 20 * time.Second
	DefaultRecoveryTimeout = 10 * time.Second
)

// Options tune a run. Zero values take the defaults.
type Options struct {
	// Logger receives the nodes', enactors' and checker's logs; the
	// default discards them.
	Logger *slog.Logger
	// Dir is where the run's temporary data directory is made (default
	// the system's); the directory is removed at the end.
	Dir string
	// StepTimeout bounds every wait of a step (cluster start, a node
	// catching up, DNS reflecting a node's state, a lease expiring).
	// Running out fails the run; it is a ceiling for a broken run, not a
	// pace.
	StepTimeout time.Duration
	// RecoveryTimeout bounds how long the enactor loops get to apply the
	// plan made after the race (broken-planner: the healthy plan, and the
	// rollback after the unfreeze). The legacy loops end it sooner, once
	// each has been refused twice by its own check.
	RecoveryTimeout time.Duration
	// Insecure runs the cluster and the actors in plaintext,
	// unauthenticated, for comparison. By default every link is mutual
	// TLS and each actor dials with a certificate naming the id it acts
	// as, so the nodes authorize its calls as they would in production.
	Insecure bool
	// Store is the log the cluster runs on (default raft). On the etcd
	// store, Etcd says how to reach etcd; each run keeps its log under a
	// prefix of its own below Etcd.Prefix, so runs never meet.
	Store cluster.Store
	Etcd  cluster.EtcdConfig

	// unfenced is for the checker's own test: the fixed script's late
	// write and clean-up go through the legacy RPCs, as if the cluster had
	// no fence and no rule keeping applied plans. The verdict must flip.
	unfenced bool
	// noDoubt and noVelocity are for the broken-planner checker's own
	// test: the cluster is founded with max_plan_change 1 (it doubts
	// nothing) and, with both, max_capacity_drop 1 (no velocity limit
	// either, so the bad plan reaches DNS). The verdict must flip.
	noDoubt, noVelocity bool
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.StepTimeout = cmp.Or(o.StepTimeout, DefaultStepTimeout)
	o.RecoveryTimeout = cmp.Or(o.RecoveryTimeout, DefaultRecoveryTimeout)
}

// Verdict is what a run observed, in the three respects of the AWS event.
type Verdict struct {
	// EmptyAnswerObserved: some node answered an endpoint with no
	// addresses after having answered it with some (I2), in the timeline
	// or to the checker.
	EmptyAnswerObserved bool `json:"empty_answer_observed"`
	// Regressed: some node's served generation of an endpoint went back
	// (I1), in the timeline or to the checker.
	Regressed bool `json:"regressed"`
	// Recovered: after the race, the enactor loops applied the next plan
	// to the regional endpoint on every node, with addresses, without
	// help (L3).
	Recovered bool `json:"recovered"`
}

// Expected is how a design behaves when the system is what it claims: the
// legacy design fails as AWS's did, the fixed design not at all.
func Expected(d contract.Design) Verdict {
	if d == contract.Legacy {
		return Verdict{EmptyAnswerObserved: true, Regressed: true, Recovered: false}
	}
	return Verdict{EmptyAnswerObserved: false, Regressed: false, Recovered: true}
}

// Answer is what one node's DNS answered for the regional endpoint: the A
// query's rcode and addresses, and the generation its _dnsplan TXT record
// names (0 when it has none).
type Answer struct {
	Node string `json:"node"`
	// Endpoint is the name asked, where a step asks for several.
	Endpoint   string   `json:"endpoint,omitempty"`
	Rcode      string   `json:"rcode"`
	Generation uint64   `json:"generation"`
	Addresses  []string `json:"addresses"`
}

// Empty reports an answer without addresses (NODATA, NXDOMAIN, an error).
func (a Answer) Empty() bool { return len(a.Addresses) == 0 }

// Event is one step of the timeline: who did what, what the cluster
// answered, and then what every node's DNS answered.
type Event struct {
	// Offset is the time since the first step, when the action completed.
	Offset time.Duration `json:"-"`
	// OffsetMS is Offset in milliseconds, for JSON.
	OffsetMS int64  `json:"offset_ms"`
	Actor    string `json:"actor"`
	Action   string `json:"action"`
	Result   string `json:"result"`
	// Detail is more of the result, line by line: a diff, the nodes'
	// status.
	Detail []string `json:"detail,omitempty"`
	DNS    []Answer `json:"dns"`
}

// CheckerSummary is what the invariant checker (package probe), running
// beside the script and taking at least one full round after every step,
// reported.
type CheckerSummary struct {
	Rounds int `json:"rounds"`
	I1     int `json:"i1_violations"`
	I2     int `json:"i2_violations"`
	// First holds the first few violations, for the reader.
	First []string `json:"first,omitempty"`
}

// Report is the outcome of one run.
type Report struct {
	Design contract.Design `json:"design"`
	// Variant names a deliberately broken run (the checker's self-test);
	// empty for the real designs.
	Variant  string `json:"variant,omitempty"`
	Endpoint string `json:"endpoint"`
	Verdict
	Expected   Verdict `json:"expected"`
	AsExpected bool    `json:"as_expected"`
	// Findings explain the verdict, one line each.
	Findings []string       `json:"findings"`
	Checker  CheckerSummary `json:"checker"`
	Timeline []Event        `json:"timeline"`
	Took     time.Duration  `json:"-"`
	TookMS   int64          `json:"took_ms"`
}

// Run replays the interleaving against one design on a fresh cluster and
// reports what was observed. An error means the replay itself could not
// be carried out (a node did not start, a wait ran out); a design that
// misbehaves is a report whose AsExpected is false.
func Run(ctx context.Context, d contract.Design, opts Options) (*Report, error) {
	if d != contract.Legacy && d != contract.Fixed {
		return nil, fmt.Errorf("scenario: unknown design %q", d)
	}
	opts.setDefaults()
	began := time.Now()
	nodes := d
	if opts.unfenced {
		nodes = contract.Legacy
	}
	// The planner's client, which the observers share: a planner may
	// read everything they read.
	s, err := newStage(ctx, opts, stageConfig{
		log:       opts.Logger.With("component", "scenario", "design", string(d)),
		design:    nodes,
		observer:  auth.Identity{Role: auth.RolePlanner, Name: plannerID},
		endpoints: []string{Regional, fips, ipv6, account},
	})
	if err != nil {
		return nil, err
	}
	defer s.close()

	r := &run{
		stage:     s,
		design:    d,
		report:    &Report{Design: d, Endpoint: Regional, Expected: Expected(d)},
		lastGen:   map[string]uint64{},
		answered:  map[string]bool{},
		regressed: map[string]bool{},
		emptied:   map[string]bool{},
	}
	if opts.unfenced {
		r.report.Variant = "fence and clean-up rule bypassed through the legacy RPCs (checker self-test)"
	}
	r.start = time.Now()
	if d == contract.Legacy {
		err = r.legacy(ctx)
	} else {
		err = r.fixed(ctx)
	}
	r.summarize(s.stopChecker())
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", d, err)
	}
	r.report.Took = time.Since(began)
	r.report.TookMS = r.report.Took.Milliseconds()
	return r.report, nil
}

// stage is what every run of a scenario stands on: a fresh three-node
// cluster in a temporary directory, the observers' client, the invariant
// checker running beside the script, and the start of the timeline.
type stage struct {
	opts Options
	log  *slog.Logger
	dir  string
	c    *localCluster
	// cl is the observers' client (in aws-2025 also the planner's).
	cl      *client.Client
	checker *probe.Prober
	// stopChecker ends the checker and returns what it saw.
	stopChecker func() probe.Summary
	start       time.Time
}

// stageConfig says what a stage is made of.
type stageConfig struct {
	log *slog.Logger
	// design is the design the nodes are founded with.
	design contract.Design
	// configure adjusts every node's configuration (optional).
	configure func(cfg *cluster.Config)
	// observer is the identity the observers' client dials with.
	observer auth.Identity
	// endpoints are what the checker asks every node's DNS for.
	endpoints []string
}

// newStage starts the cluster, the observers' client and the checker. The
// stage's close undoes it all; the checker must have been stopped first.
func newStage(ctx context.Context, opts Options, sc stageConfig) (_ *stage, err error) {
	s := &stage{opts: opts, log: sc.log}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.dir, err = os.MkdirTemp(opts.Dir, "dnsplan-scenario-"); err != nil {
		return nil, err
	}
	s.log.Info("starting a three-node cluster", "cluster_design", sc.design, "dir", s.dir)
	if s.c, err = startCluster(ctx, s.dir, sc.design, opts, sc.configure); err != nil {
		return nil, err
	}
	if s.cl, err = s.c.client(sc.observer, opts.Logger); err != nil {
		return nil, err
	}
	if s.stopChecker, err = s.startChecker(ctx, sc.endpoints); err != nil {
		return nil, err
	}
	return s, nil
}

// close stops the cluster and removes its directory.
func (s *stage) close() {
	if s.cl != nil {
		s.cl.Close()
	}
	if s.c != nil {
		s.c.Close()
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

// run is one replay in progress. Only the goroutine running the script
// touches it (the checker and the enactors have their own state).
type run struct {
	*stage
	design contract.Design
	report *Report
	// planned counts the plans submitted, which shapes the next one.
	planned int

	// lastGen and answered track, per node, the newest generation its DNS
	// named and whether it ever answered with addresses: the timeline's
	// own I1 and I2 checks; regressed and emptied, whether each has been
	// reported.
	lastGen            map[string]uint64
	answered           map[string]bool
	regressed, emptied map[string]bool
}

// startChecker runs the invariant checker against every node's DNS and the
// cluster, for endpoints, until the returned function is called; that
// function returns what it saw.
func (s *stage) startChecker(ctx context.Context, endpoints []string) (stop func() probe.Summary, err error) {
	cfg := probe.Config{
		Endpoints: endpoints,
		Cluster:   s.cl,
		Interval:  20 * time.Millisecond,
		Logger:    s.opts.Logger,
	}
	for i, addr := range s.c.dns {
		cfg.Nodes = append(cfg.Nodes, probe.Node{Name: s.c.ids[i], DNS: addr})
	}
	p, err := probe.New(cfg)
	if err != nil {
		return nil, err
	}
	s.checker = p
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// The checker runs beside the whole script; stop ends it.
	wg.Go(func() { _ = p.Run(ctx) })
	return func() probe.Summary {
		cancel()
		wg.Wait()
		return p.Summary()
	}, nil
}

// summarize turns the observations into the verdict.
func (r *run) summarize(s probe.Summary) {
	rep := r.report
	rep.Checker = checkerSummary(s)
	if rep.Checker.I1 > 0 {
		rep.Regressed = true
		rep.Findings = append(rep.Findings, fmt.Sprintf("the checker saw %d I1 violations (a generation went back)", rep.Checker.I1))
	}
	if rep.Checker.I2 > 0 {
		rep.EmptyAnswerObserved = true
		rep.Findings = append(rep.Findings, fmt.Sprintf("the checker saw %d I2 violations (no addresses after addresses)", rep.Checker.I2))
	}
	rep.AsExpected = rep.Verdict == rep.Expected
}

// checkerSummary is what the checker saw, with its first distinct
// violations.
func checkerSummary(s probe.Summary) CheckerSummary {
	c := CheckerSummary{Rounds: s.Rounds, I1: s.Count("I1"), I2: s.Count("I2")}
	for _, v := range s.Violations {
		if len(c.First) == 4 {
			break
		}
		// The checker reports a lasting violation in every round; show
		// distinct ones.
		line := fmt.Sprintf("%s %s %s (%s): %s", v.Invariant, v.Node, v.Endpoint, v.Source, v.Detail)
		if !slices.Contains(c.First, line) {
			c.First = append(c.First, line)
		}
	}
	return c
}

// record appends an event after waiting for every node's DNS to reflect
// the cluster's state, and checks the answers against earlier ones.
func (r *run) record(ctx context.Context, actor, action, result string) error {
	at := time.Since(r.start)
	settled, err := r.settle(ctx, Regional)
	if err != nil {
		return fmt.Errorf("after %q: %w", action, err)
	}
	answers := settled[0]
	ev := Event{Offset: at, OffsetMS: at.Milliseconds(), Actor: actor, Action: action, Result: result, DNS: answers}
	r.report.Timeline = append(r.report.Timeline, ev)
	step := len(r.report.Timeline)
	r.log.Info("step", "step", step, "actor", actor, "action", action, "result", result)
	// Each node's first regression and first empty answer become a
	// finding; the checker counts every observation.
	var back, empty []string
	for _, a := range answers {
		if a.Generation > 0 {
			if prev := r.lastGen[a.Node]; a.Generation < prev && !r.regressed[a.Node] {
				r.regressed[a.Node] = true
				back = append(back, fmt.Sprintf("%s (%d to %d)", a.Node, prev, a.Generation))
			}
			r.lastGen[a.Node] = max(r.lastGen[a.Node], a.Generation)
		}
		switch {
		case !a.Empty():
			r.answered[a.Node] = true
		case r.answered[a.Node] && !r.emptied[a.Node]:
			r.emptied[a.Node] = true
			empty = append(empty, fmt.Sprintf("%s (%s, generation %d)", a.Node, a.Rcode, a.Generation))
		}
	}
	if len(back) > 0 {
		r.report.Regressed = true
		r.finding("step %d: the generation DNS serves for %s went back on %s", step, Regional, strings.Join(back, ", "))
	}
	if len(empty) > 0 {
		r.report.EmptyAnswerObserved = true
		r.finding("step %d: DNS answered %s with no addresses on %s", step, Regional, strings.Join(empty, ", "))
	}
	return nil
}

// finding adds a line to the findings.
func (r *run) finding(format string, args ...any) {
	r.report.Findings = append(r.report.Findings, fmt.Sprintf(format, args...))
}

// gens formats a list of generations.
func gens(gs []uint64) string {
	if len(gs) == 0 {
		return "none"
	}
	parts := make([]string, len(gs))
	for i, g := range gs {
		parts[i] = fmt.Sprint(g)
	}
	return strings.Join(parts, " ")
}
