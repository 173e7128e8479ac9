package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/backend"
	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/enactor"
	"github.com/dnsplan/dnsplan/planner"
	"github.com/dnsplan/dnsplan/probe"
)

// Defaults for Config's zero values.
const (
	DefaultDuration = 30 * time.Second
	// DefaultLinger is how long a run goes on after its first violation
	// before stopping, to record what follows it (an empty answer often
	// follows a regression by a few hundred milliseconds).
	DefaultLinger = time.Second
	// LeaseTTL is the enactors' lease TTL; a frozen enactor stays frozen
	// two to three and a half times as long.
	LeaseTTL = time.Second
	// LegacyDelay is the legacy enactors' pause between two endpoint
	// writes, LegacyKeep their clean-up's keep_generations.
	LegacyDelay = 100 * time.Millisecond
	LegacyKeep  = 10
	// checkTimeout bounds porcupine; beyond it the result is inconclusive.
	checkTimeout = 60 * time.Second
)

// Config is one run.
type Config struct {
	Design contract.Design
	Seed   uint64
	// Duration is how long faults are injected and the system observed
	// (default DefaultDuration). Setting up and the final checks add a few
	// seconds.
	Duration time.Duration
	// Faults is the fault mix (default DefaultMix).
	Faults map[FaultKind]int
	// KeepGoing runs the whole duration even after a violation; by default
	// a run stops Linger after its first violation.
	KeepGoing bool
	Linger    time.Duration
	// Dir holds the nodes' data (a temporary directory, removed, if
	// empty). Out receives the history files of a run with a violation
	// (the current directory if empty).
	Dir string
	Out string
	// Logger receives the components' logs (default: discarded).
	Logger *slog.Logger
	// Insecure runs the cluster and every client in plaintext,
	// unauthenticated, for comparison; by default every link is mutual
	// TLS (see the package documentation).
	Insecure bool
}

// ErrConfig is wrapped by Run's error for a configuration it refuses.
var ErrConfig = errors.New("chaos: bad configuration")

func (c *Config) setDefaults() error {
	switch c.Design {
	case contract.Fixed, contract.Legacy:
	default:
		return fmt.Errorf("%w: design %q is not fixed or legacy", ErrConfig, c.Design)
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Duration < 5*time.Second {
		return fmt.Errorf("%w: duration %s is under 5s", ErrConfig, c.Duration)
	}
	if c.Faults == nil {
		c.Faults = DefaultMix
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Out == "" {
		c.Out = "."
	}
	return nil
}

// The inventory: four load balancers behind the endpoints the checks
// observe, as AWS's one regional plan covered regional, FIPS and IPv6
// endpoints. api-dual serves both families (lb-1 and lb-2 over IPv4, lb-3
// and lb-4 over IPv6), so failing lb-1 and lb-2 moves all its weight to
// AAAA.
var endpoints = []string{"api-dual.dnsplan.test.", "api-fips.dnsplan.test.", "api-v6.dnsplan.test.", "api.dnsplan.test."}

// Padding: endpoints with many always-healthy targets that every plan
// carries and no check observes, so that a plan is tens of KB and a few
// hundred KB pile up in a stream that stops being read within a few
// plans, as in a real regional plan. Few endpoints, many targets: the
// audit history records one event per endpoint applied.
const (
	padEndpoints = 12
	padTargets   = 100
)

func inventory(checks []string) *planner.Inventory {
	t := func(i int, addr string) planner.Target {
		return planner.Target{ID: fmt.Sprintf("lb-%d", i+1), Address: addr, Capacity: 100, Check: checks[i]}
	}
	inv := &planner.Inventory{Zone: "dnsplan.test.", Endpoints: []planner.Endpoint{
		{Name: "api-dual.dnsplan.test.", TTL: 5, Targets: []planner.Target{t(0, "192.0.2.11"), t(1, "192.0.2.12"), t(2, "2001:db8::13"), t(3, "2001:db8::14")}},
		{Name: "api-fips.dnsplan.test.", TTL: 5, Targets: []planner.Target{t(0, "192.0.2.11"), t(1, "192.0.2.12")}},
		{Name: "api-v6.dnsplan.test.", TTL: 5, Targets: []planner.Target{t(2, "2001:db8::13"), t(3, "2001:db8::14")}},
		{Name: "api.dnsplan.test.", TTL: 5, Targets: []planner.Target{t(0, "192.0.2.11"), t(1, "192.0.2.12"), t(2, "192.0.2.13"), t(3, "192.0.2.14")}},
	}}
	for e := range padEndpoints {
		ep := planner.Endpoint{Name: fmt.Sprintf("pad-%02d.dnsplan.test.", e), TTL: 60}
		for i := range padTargets {
			ep.Targets = append(ep.Targets, planner.Target{
				ID:       fmt.Sprintf("pad-%02d-target-%03d", e, i),
				Address:  fmt.Sprintf("198.51.%d.%d", 100+e, i+1),
				Capacity: 100,
			})
		}
		inv.Endpoints = append(inv.Endpoints, ep)
	}
	return inv
}

// The identities the run's clients act as. The planner and the enactors
// act as themselves (their ids are their certificates' names, as the
// cluster requires of a planner's plans and an enactor's leases and
// applies); the observers read as one reader; the bare watchers, a
// process of their own, as another; the admin client that removes added
// nodes is an operator.
var (
	asPlanner  = auth.Identity{Role: auth.RolePlanner, Name: "planner"}
	asObserver = auth.Identity{Role: auth.RoleReader, Name: "observer"}
	asWatcher  = auth.Identity{Role: auth.RoleReader, Name: "stalled-watcher"}
	asOperator = auth.Identity{Role: auth.RoleOperator, Name: "operator"}
)

// actor is one enactor of the run, with the knobs faults turn.
type actor struct {
	id   string
	e    *enactor.Enactor
	slow atomic.Int64 // nanoseconds to pause before each write; 0: full speed
	// freeze, when set, freezes the enactor at its next write and is then
	// closed: the moment the AWS enactor was delayed at, its decision
	// (and, in the fixed design, its token) already taken.
	freeze atomic.Pointer[chan struct{}]
	// lastWrite is when it last set out to write (Unix nanoseconds): the
	// active enactor is the one whose freezing or slowing matters.
	lastWrite atomic.Int64
	// watch stalls its plan watch and knows which node serves it.
	watch *watchStall
}

// run is one run's moving parts.
type run struct {
	cfg      Config
	log      *slog.Logger
	rec      *recorder
	cluster  *localCluster
	enactors []*actor
	leaseTTL time.Duration
	audit    *auditLog
	replicas *replicaCheck
	// auditClient fetches the audit history and makes the final reads;
	// adminClient removes added nodes.
	auditClient *client.Client
	adminClient *client.Client
	clients     []*client.Client

	// observe is the observers' context, and observers their wait group:
	// a node added during the run gets its own probe, started with it.
	observe   context.Context
	observers *sync.WaitGroup
	// dns judges DNS answers per family and against what was applied;
	// status checks that no node hangs.
	dns    *dnsCheck
	status *statusCheck

	// mu guards probers, stalls and added: faults add to them.
	mu      sync.Mutex
	probers []*probe.Prober
	stalls  []*bareWatcher
	// added is the probe stop of each node an add-node fault started.
	added map[int]context.CancelFunc
	// held are the generations the cluster stored held on doubt
	// (doubtful-plan faults): never to be applied (D1).
	held map[uint64]bool
}

// holdGeneration records a generation the cluster stored held.
func (r *run) holdGeneration(g uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held == nil {
		r.held = map[uint64]bool{}
	}
	r.held[g] = true
}

func (r *run) heldGenerations() map[uint64]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.held)
}

// Run starts a fresh cluster, the actors and the observers, injects the
// seed's faults for the configured duration (or until shortly after the
// first violation), heals everything, checks I1–I5, I7, D1, L2 and L3 on what
// was recorded, and returns the report. An error means the harness itself failed (the
// cluster could not start, say), not that an invariant did.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "dnsplan-chaos-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		cfg.Dir = dir
	}
	r := &run{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "chaos", "design", cfg.Design, "seed", cfg.Seed),
		leaseTTL: LeaseTTL,
	}
	defer r.closeClients()
	faults := schedule(cfg.Seed, cfg.Duration, r.leaseTTL, cfg.Faults)
	r.log.Info("run starting", "duration", cfg.Duration, "faults", len(faults))

	var err error
	r.cluster, err = startCluster(ctx, cfg.Dir, cfg.Design, !cfg.Insecure, clockOffsets(cfg.Seed), cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	defer r.cluster.Close()
	// The recorder's clock starts once the cluster is up, so the schedule
	// is not eaten by a slow start.
	r.rec = newRecorder(endpoints)
	r.audit = newAuditLog()
	r.replicas = newReplicaCheck(r)
	r.dns = newDNSCheck(r.rec, r.replicas.served)
	r.added = map[int]context.CancelFunc{}
	defer r.closeStalls()

	// Two lifetimes: the actors (planner, health, enactors) stop first,
	// once faults are healed; the observers after the final reads. On an
	// early return both stop here, before the cluster does.
	observe, stopObservers := context.WithCancel(ctx)
	act, stopActors := context.WithCancel(ctx)
	var observers, actors sync.WaitGroup
	defer func() {
		stopActors()
		actors.Wait()
		stopObservers()
		observers.Wait()
	}()

	backends, stopBackends, err := startBackends(4)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	defer stopBackends()
	if err := r.startActors(act, &actors, backends); err != nil {
		return nil, err
	}
	if err := r.startObservers(observe, &observers); err != nil {
		return nil, err
	}

	// Faults, until the duration is up or shortly after a violation.
	runCtx, stopRun := context.WithTimeout(ctx, cfg.Duration)
	defer stopRun()
	faultErr := make(chan error, 1)
	// lastHeal is when the injector healed its last fault (nanoseconds
	// since the start), or -1 when it stopped early: L2 is judged from
	// then on.
	lastHeal := make(chan int64, 1)
	go func() {
		err := injector{r}.run(runCtx, faults)
		at := r.rec.now()
		if runCtx.Err() != nil {
			at = -1
		}
		lastHeal <- at
		faultErr <- err
	}()
	l2 := make(chan finalL2, 1)
	go func() {
		at := <-lastHeal
		if at < 0 {
			l2 <- finalL2{}
			return
		}
		v, judged := r.checkFinalL2(runCtx, at)
		l2 <- finalL2{v, judged}
	}()
	early := false
	select {
	case <-runCtx.Done():
	case <-r.rec.violated:
		if !cfg.KeepGoing {
			early = true
			select {
			case <-runCtx.Done():
			case <-time.After(cfg.Linger):
			}
			stopRun()
		}
	}
	if !early {
		<-runCtx.Done()
	}
	stopRun()
	harnessErr := <-faultErr
	afterHeal := <-l2
	observed := time.Duration(r.rec.now())

	// Heal everything, stop the actors, let the cluster settle, read once
	// more, then stop observing.
	r.healAll()
	stopActors()
	actors.Wait()
	if err := r.cluster.StartAll(); err != nil && harnessErr == nil {
		harnessErr = err
	}
	settleErr := r.cluster.WaitReady(ctx, 20*time.Second)
	final := r.finalState(ctx)
	stopObservers()
	observers.Wait()
	r.log.Info("observation over", "observed", observed, "settled_in", time.Duration(r.rec.now())-observed)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if harnessErr != nil {
		return nil, fmt.Errorf("chaos: injecting faults: %w", harnessErr)
	}
	if settleErr != nil {
		r.rec.violate(Violation{Invariant: "I5", Source: "final", Detail: "the cluster did not recover after every fault was healed: " + settleErr.Error()})
	}

	checkStart := time.Now()
	rep := r.check(faults, r.probeSummary(), final, afterHeal)
	r.log.Info("checked", "took", time.Since(checkStart), "violations", len(rep.Violations))
	rep.Observed = observed
	rep.StoppedEarly = early
	if len(rep.Violations) > 0 {
		// The report stands without its files: a failure to write them
		// is a note, not a failed run.
		if err := rep.writeFiles(cfg.Out); err != nil {
			rep.Notes = append(rep.Notes, "the history files could not be written: "+err.Error())
		}
	}
	return rep, nil
}

// finalL2 is the L2 check after the last fault healed.
type finalL2 struct {
	violations []Violation
	judged     bool // false when the run ended first
}

// healAll undoes every fault that may be under way. (The injector heals
// the fault it is injecting when the run ends; this is for what a fault
// left behind.)
func (r *run) healAll() {
	r.cluster.net.Heal()
	for _, a := range r.enactors {
		a.slow.Store(0)
		a.e.Resume()
		a.watch.resume(false)
	}
}

// closeStalls drops every bare watcher still open.
func (r *run) closeStalls() {
	r.mu.Lock()
	stalls := r.stalls
	r.stalls = nil
	r.mu.Unlock()
	for _, w := range stalls {
		w.close()
	}
}

// newClient is a client acting as id, with its certificate on a TLS
// cluster.
func (r *run) newClient(id auth.Identity, opts ...client.Option) (*client.Client, error) {
	tlsCfg, err := r.cluster.ClientTLS(id)
	if err != nil {
		return nil, err
	}
	// Each client starts at a different node; the rest of the list is
	// the failover order.
	addrs := r.cluster.GRPCAddrs()[:clusterSize]
	k := len(r.clients) % len(addrs)
	addrs = append(addrs[k:], addrs[:k]...)
	c, err := client.New(addrs, append([]client.Option{client.WithLogger(r.cfg.Logger), client.WithTLS(tlsCfg)}, opts...)...)
	if err != nil {
		return nil, err
	}
	r.clients = append(r.clients, c)
	return c, nil
}

func (r *run) closeClients() {
	for _, c := range r.clients {
		c.Close()
	}
}

// sampleBackend is one load balancer the planner checks and the run fails
// and recovers.
type sampleBackend struct {
	*backend.Backend
	check string // the planner's health check URL
}

// startBackends serves n sample backends on loopback.
func startBackends(n int) ([]sampleBackend, func(), error) {
	var backends []sampleBackend
	var servers []*http.Server
	stop := func() {
		for _, s := range servers {
			s.Close()
		}
	}
	for i := range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			stop()
			return nil, nil, err
		}
		b := backend.New(fmt.Sprintf("lb-%d", i+1))
		s := &http.Server{Handler: b.Handler(), ReadHeaderTimeout: time.Second}
		// Serve ends when stop closes the server.
		go func() { _ = s.Serve(lis) }()
		servers = append(servers, s)
		backends = append(backends, sampleBackend{Backend: b, check: "http://" + lis.Addr().String() + "/healthz"})
	}
	return backends, stop, nil
}
