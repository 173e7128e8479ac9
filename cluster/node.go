package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/cluster/dnsserver"
	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/internal/rate"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Peer is one founding member of a cluster.
type Peer struct {
	ID       string
	RaftAddr string
}

// Config is everything a node needs. Zero durations and counts take the
// defaults noted on each field.
type Config struct {
	ID      string
	DataDir string

	// Store is the log under the state machine: StoreRaft (the default,
	// Raft's own log among the nodes) or StoreEtcd (a log kept in etcd,
	// described by Etcd; etcd.go). The API, DNS and the rules are the same
	// on both. On etcd the Raft fields, InitialCluster and Join do not
	// apply; DataDir keeps only the DNS served index.
	Store Store
	Etcd  EtcdConfig

	// RaftAddr is the Raft TCP listen address; AdvertiseRaft what peers
	// dial (default RaftAddr). RaftListener, if set, is used instead of
	// listening on RaftAddr (tests pass one bound to port 0).
	RaftAddr      string
	AdvertiseRaft string
	RaftListener  net.Listener
	// RaftDial, if set, opens this node's Raft connections to its peers
	// (fault-injection tests cut links with it); default plain TCP.
	RaftDial func(addr string, timeout time.Duration) (net.Conn, error)

	// TLS, if set, is the node's certificate and CA: the gRPC API admits
	// only clients with a certificate of the CA, the Raft port only nodes,
	// and the node's own connections to its peers (Raft, forwarding,
	// joining, the DNS floor) present its certificate and accept only
	// nodes of the CA. Nil runs every link in plaintext.
	TLS *auth.Loader

	// GRPCAddr, AdvertiseGRPC and GRPCListener: the same for the gRPC API.
	GRPCAddr      string
	AdvertiseGRPC string
	GRPCListener  net.Listener

	// HTTPAddr serves /metrics, /healthz, /readyz and a status page; empty
	// disables it. HTTPListener overrides it.
	HTTPAddr     string
	HTTPListener net.Listener

	// DNSAddr is where the authoritative DNS server listens (UDP and TCP);
	// empty disables it. DNSPacketConn and DNSListener override it.
	DNSAddr       string
	DNSPacketConn net.PacketConn
	DNSListener   net.Listener
	// Zones are the zones the node answers for (default dnsplan.test.);
	// NSNames the NS records at each apex (default ns1.<zone>).
	Zones   []string
	NSNames []string
	// DNSRateLimit and DNSMaxTCPConns bound DNS clients: UDP answers a
	// second per client prefix before they are truncated, and concurrent
	// TCP connections (dnsserver's defaults when zero).
	DNSRateLimit   float64
	DNSMaxTCPConns int

	// InitialCluster lists the founding members (including this node);
	// Join is the gRPC address of a member to ask to add this node. Both
	// are ignored when DataDir already holds Raft state. With neither, a
	// fresh node bootstraps a one-node cluster.
	InitialCluster []Peer
	Join           string

	// MaxCapacityDrop and VelocityWindow are the velocity limit this node
	// founds a new cluster with: the largest fraction of an endpoint's
	// served capacity that may be removed within the window without force
	// (defaults 0.5 and 60s; 1 disables the limit). Once founded, the
	// cluster's own policy (fsm.State.Config) is what every node applies.
	// MaxCapacityDrop nil means the default; 0 is a limit like any other.
	MaxCapacityDrop *float64
	VelocityWindow  time.Duration
	// MaxPlanChange is the max_plan_change a new cluster is founded with
	// (fsm/doubt.go; default 0.3, 1 disables it).
	MaxPlanChange float64
	// MaxVelocityRefusals is the max_velocity_refusals a new cluster is
	// founded with (fsm/doubt.go; nil: the default 5; 0 turns it off).
	MaxVelocityRefusals *uint32
	// MaxReadBackFailures is the max_read_back_failures a new cluster is
	// founded with (fsm/doubt.go; default 0.5, 1 disables it).
	MaxReadBackFailures float64

	// SnapshotThreshold is how many log entries since the last snapshot
	// trigger a new one (default 8192); SnapshotInterval how often that is
	// checked (default 30s); TrailingLogs how many entries a snapshot
	// leaves in the log for slow followers (default 10240).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64

	// Raft timing (defaults: hashicorp/raft's, 1s heartbeat and election
	// timeouts, 500ms leader lease). Tests shorten them.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	// CommitTimeout is how long an idle leader waits before sending
	// followers an append that tells them the new commit index (default
	// 10ms; Raft's own default of 50ms delays what followers' DNS serves).
	CommitTimeout time.Duration

	// Legacy also serves the old, unsafe apply and clean-up (LegacyService),
	// for demonstrating the AWS failure. Never for real use.
	Legacy bool

	// Clock is this node's wall clock (default time.Now). Fault-injection
	// tests skew it to show that no node's clock can stop leases expiring.
	Clock func() time.Time
	// Monotonic is this node's monotonic clock (default time.Now, whose
	// readings carry Go's monotonic clock reading): the time its stamps
	// add to their base. Tests move it forward to stand for a stretch
	// of idle time without waiting for it.
	Monotonic func() time.Time

	// ApplyTimeout bounds one proposal when the request has no deadline
	// (default 10s).
	ApplyTimeout time.Duration

	// Watch streams (see watch.go): WatchSendTimeout is how long one
	// message may wait for a client to read before its stream is ended
	// (default 10s); MaxWatchers and MaxWatchersPerClient cap open watch
	// streams per node and per client: its identity with TLS, its address
	// without (defaults 1024 and 64).
	WatchSendTimeout     time.Duration
	MaxWatchers          int
	MaxWatchersPerClient int

	// WriteRate and WriteBurst bound the writes one client may make
	// through this node (its identity with TLS, its address without):
	// WriteRate per second on average, WriteBurst at once (defaults 200
	// and 400). Beyond them a write is refused RESOURCE_EXHAUSTED
	// (reason RATE_LIMIT) without reaching the log.
	WriteRate  float64
	WriteBurst int

	// RecordRefusalsEvery is how often the node records the calls it
	// refused in the audit history (default 5s; refusals.go).
	RecordRefusalsEvery time.Duration

	Logger *slog.Logger
	// RaftLogOutput receives hashicorp/raft's own log (default stderr) at
	// RaftLogLevel (default "warn").
	RaftLogOutput io.Writer
	RaftLogLevel  string
}

func (c *Config) setDefaults() error {
	if c.ID == "" {
		return errors.New("cluster: node id is required")
	}
	if c.DataDir == "" {
		c.DataDir = filepath.Join("data", c.ID)
	}
	if c.Store == "" {
		c.Store = StoreRaft
	}
	if c.RaftListener == nil && c.RaftAddr == "" {
		c.RaftAddr = "127.0.0.1:7001"
	}
	if c.GRPCListener == nil && c.GRPCAddr == "" {
		c.GRPCAddr = "127.0.0.1:9001"
	}
	if c.MaxCapacityDrop == nil {
		d := fsm.DefaultMaxCapacityDrop
		c.MaxCapacityDrop = &d
	}
	if err := fsm.ValidateMaxCapacityDrop(*c.MaxCapacityDrop); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if c.MaxVelocityRefusals == nil {
		c.MaxVelocityRefusals = proto.Uint32(fsm.DefaultMaxVelocityRefusals)
	}
	if err := fsm.ValidateMaxVelocityRefusals(*c.MaxVelocityRefusals); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if c.MaxReadBackFailures == 0 {
		c.MaxReadBackFailures = fsm.DefaultMaxReadBackFailures
	}
	if err := fsm.ValidateMaxReadBackFailures(c.MaxReadBackFailures); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if c.MaxPlanChange == 0 {
		c.MaxPlanChange = fsm.DefaultMaxPlanChange
	}
	if err := fsm.ValidateMaxPlanChange(c.MaxPlanChange); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if c.VelocityWindow == 0 {
		c.VelocityWindow = fsm.DefaultVelocityWindow
	}
	if err := fsm.ValidateVelocityWindow(durationpb.New(c.VelocityWindow)); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = 10 * time.Second
	}
	if c.RecordRefusalsEvery == 0 {
		c.RecordRefusalsEvery = defaultRecordRefusalsEvery
	}
	if c.Monotonic == nil {
		c.Monotonic = time.Now
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RaftLogOutput == nil {
		c.RaftLogOutput = os.Stderr
	}
	if c.RaftLogLevel == "" {
		c.RaftLogLevel = "warn"
	}
	if err := c.checkStore(); err != nil {
		return err
	}
	if len(c.InitialCluster) > 0 && c.Join != "" {
		return errors.New("cluster: --initial-cluster and --join are exclusive")
	}
	if len(c.InitialCluster) > 0 {
		seen := map[string]bool{}
		self := false
		for _, p := range c.InitialCluster {
			if p.ID == "" || p.RaftAddr == "" {
				return fmt.Errorf("cluster: initial cluster member %+v needs an id and a Raft address", p)
			}
			if seen[p.ID] {
				return fmt.Errorf("cluster: initial cluster names %q twice", p.ID)
			}
			seen[p.ID] = true
			self = self || p.ID == c.ID
		}
		if !self {
			return fmt.Errorf("cluster: initial cluster does not name this node %q", c.ID)
		}
	}
	return nil
}

// Node is one running cluster member.
type Node struct {
	cfg     Config
	log     *slog.Logger
	raft    *raft.Raft
	machine *machine
	metrics *metrics
	writes  *rate.Limiter // per-client write rate (ratelimit.go)
	// refusals are the calls refused since they were last recorded
	// (refusals.go).
	refusals refusalLog

	// etcd is the etcd store (etcd.go); nil on Raft, where raft, store
	// and transport are set instead.
	etcd *etcdStore

	store     *raftboltdb.BoltStore
	transport *raft.NetworkTransport
	grpc      *grpc.Server
	grpcLis   net.Listener
	http      *http.Server
	httpLis   net.Listener
	dns       *dnsserver.Server
	dnsAddr   string
	// dnsGate decides when DNS may answer and what it has recorded and
	// served (dns.go).
	dnsGate dnsGate

	// readyTerm is the term in which this node, as leader, finished its
	// barrier: every entry of earlier terms is applied, so its state is
	// current and linearizable reads may be served.
	readyTerm atomic.Uint64
	// stamps is how this node, as a ready leader, stamps commands; set
	// before readyTerm in each term (see stamp).
	stamps atomic.Pointer[stampLine]
	// skew is the leader's wall clock minus its last stamp (nanoseconds);
	// skewWarned is when the last clock-skew warning was logged (Unix
	// nanoseconds), so a skewed leader warns once a minute, not per command.
	skew       atomic.Int64
	skewWarned atomic.Int64

	// connsMu guards conns, the cached connections to other members'
	// gRPC APIs used for forwarding.
	connsMu sync.Mutex
	conns   map[string]*grpc.ClientConn

	closing   chan struct{} // closed when Close starts; ends streams and loops
	closeOnce sync.Once
	// fatal receives the one error that made the node stop itself (see
	// fail); failOnce makes it one.
	fatal    chan error
	failOnce sync.Once
	wg       sync.WaitGroup // background goroutines
}

// Start opens the stores, starts Raft, the gRPC API and the HTTP endpoint,
// and the background loops (leadership set-up, self-registration, join).
func Start(cfg Config) (n *Node, err error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	n = &Node{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "cluster", "node", cfg.ID),
		conns:   map[string]*grpc.ClientConn{},
		closing: make(chan struct{}),
		fatal:   make(chan error, 1),
	}
	n.metrics = newMetrics(n)
	n.writes = rate.New(cmp.Or(cfg.WriteRate, DefaultWriteRate), cmp.Or(cfg.WriteBurst, DefaultWriteBurst))
	n.machine = newMachine(n.metrics.observe)
	// The returns below set n to nil; close what was opened through a
	// copy.
	started := n
	defer func() {
		if err != nil {
			started.Close()
		}
	}()
	if cfg.Store == StoreEtcd {
		return n.startOnEtcd()
	}
	joining, err := n.startRaft()
	if err != nil {
		return nil, err
	}
	// Raft has restored the local snapshot: a node whose design disagrees
	// with its cluster's refuses to start. A policy that is only in the
	// log, or that a new node has yet to learn, is checked by policyLoop
	// as soon as the replica applies it.
	var warned *pb.ClusterConfig
	if err := n.checkPolicy(&warned); err != nil {
		return nil, err
	}
	if err := n.startGRPC(); err != nil {
		return nil, err
	}
	if err := n.startDNS(); err != nil {
		return nil, err
	}
	if err := n.startHTTP(); err != nil {
		return nil, err
	}
	n.goLoop(n.leadershipLoop)
	n.goLoop(n.registrationLoop)
	n.goLoop(n.refusalLoop)
	n.goLoop(n.activationLoop)
	n.goLoop(func() { n.policyLoop(warned) })
	if joining {
		n.goLoop(n.joinLoop)
	}
	return n, nil
}

// startRaft opens the stores and starts Raft, bootstrapping a new cluster
// if the configuration asks for it; joining reports that the node must
// still ask a member to add it.
func (n *Node) startRaft() (joining bool, err error) {
	cfg := n.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return false, fmt.Errorf("cluster: data dir: %w", err)
	}
	store, err := raftboltdb.NewBoltStore(filepath.Join(cfg.DataDir, "raft.db"))
	if err != nil {
		return false, fmt.Errorf("cluster: opening log store: %w", err)
	}
	n.store = store
	hlog := hclog.New(&hclog.LoggerOptions{
		Name:   "raft." + cfg.ID,
		Level:  hclog.LevelFromString(cfg.RaftLogLevel),
		Output: cfg.RaftLogOutput,
	})
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hlog)
	if err != nil {
		return false, fmt.Errorf("cluster: opening snapshot store: %w", err)
	}
	lis := cfg.RaftListener
	if lis == nil {
		if lis, err = net.Listen("tcp", cfg.RaftAddr); err != nil {
			return false, fmt.Errorf("cluster: raft listen: %w", err)
		}
	}
	advertise := cfg.AdvertiseRaft
	if advertise == "" {
		advertise = lis.Addr().String()
	}
	n.cfg.AdvertiseRaft = advertise
	n.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{Listener: lis, advertise: hostPort(advertise), dial: cfg.RaftDial, tls: cfg.TLS},
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hlog,
	})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	rc.CommitTimeout = 10 * time.Millisecond
	if cfg.CommitTimeout > 0 {
		rc.CommitTimeout = cfg.CommitTimeout
	}
	if cfg.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	}
	if rc.LeaderLeaseTimeout > rc.HeartbeatTimeout {
		rc.LeaderLeaseTimeout = rc.HeartbeatTimeout
	}
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	if err := raft.ValidateConfig(rc); err != nil {
		return false, fmt.Errorf("cluster: raft config: %w", err)
	}

	existing, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return false, fmt.Errorf("cluster: reading existing state: %w", err)
	}
	logs, err := raft.NewLogCache(512, store)
	if err != nil {
		return false, err
	}
	r, err := raft.NewRaft(rc, n.machine, logs, store, snaps, n.transport)
	if err != nil {
		return false, fmt.Errorf("cluster: starting raft: %w", err)
	}
	n.raft = r

	switch {
	case existing:
		n.log.Info("restarting from existing state", "data_dir", cfg.DataDir)
	case len(cfg.InitialCluster) > 0:
		// Every founding node bootstraps with the same configuration; Raft
		// treats identical bootstraps as one, so start order does not matter.
		var servers []raft.Server
		for _, p := range cfg.InitialCluster {
			addr := p.RaftAddr
			if p.ID == cfg.ID {
				addr = advertise
			}
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(addr)})
		}
		if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return false, fmt.Errorf("cluster: bootstrap: %w", err)
		}
		n.log.Info("bootstrapped founding cluster", "members", len(servers))
	case cfg.Join != "":
		n.log.Info("joining cluster", "via", cfg.Join)
		joining = true
	default:
		err := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: raft.ServerID(cfg.ID), Address: raft.ServerAddress(advertise),
		}}}).Error()
		if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return false, fmt.Errorf("cluster: bootstrap: %w", err)
		}
		n.log.Info("bootstrapped single-node cluster")
	}
	return joining, nil
}

func (n *Node) startHTTP() error {
	lis := n.cfg.HTTPListener
	if lis == nil {
		if n.cfg.HTTPAddr == "" {
			return nil
		}
		var err error
		if lis, err = net.Listen("tcp", n.cfg.HTTPAddr); err != nil {
			return fmt.Errorf("cluster: http listen: %w", err)
		}
	}
	n.httpLis = lis
	n.http = &http.Server{Handler: n.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
	n.goLoop(func() {
		if err := n.http.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "err", err)
		}
	})
	return nil
}

// await waits for a Raft future, or until the node closes. Raft answers
// no future still queued for its main loop when it shuts down (a barrier
// or an apply enqueued a moment before Close), so waiting on Error alone
// can last forever; a loop Close waits for must not. A future given up on
// this way may still complete: its outcome is unknown, as for any
// leadership loss.
func (n *Node) await(f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-n.closing:
		return raft.ErrRaftShutdown
	}
}

// goLoop runs f as a background goroutine that Close waits for.
func (n *Node) goLoop(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// leadershipLoop makes a new leader ready: a barrier applies every entry
// of earlier terms before the node serves linearizable reads, and a
// cluster that has no policy yet gets one (foundPolicy) before the leader
// counts as ready.
func (n *Node) leadershipLoop() {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-n.closing:
			return
		case <-n.raft.LeaderCh():
		case <-tick.C:
		}
		if n.raft.State() != raft.Leader {
			continue
		}
		term := n.raft.CurrentTerm()
		if n.readyTerm.Load() == term {
			continue
		}
		if err := n.await(n.raft.Barrier(n.cfg.ApplyTimeout)); err != nil {
			n.log.Warn("leader barrier failed", "term", term, "err", err)
			continue
		}
		// Every earlier entry is applied: the state's time is the cluster's,
		// and this term's stamps start from it.
		var stateNow time.Time
		n.machine.read(func(s *fsm.State) { stateNow = s.Now() })
		wall := n.cfg.Clock()
		base := fsm.LeaderBase(stateNow, wall)
		n.stamps.Store(&stampLine{term: term, base: base, start: n.cfg.Monotonic()})
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ApplyTimeout)
		err := n.foundPolicy(ctx)
		cancel()
		if err != nil {
			n.log.Warn("founding the cluster's policy failed", "term", term, "err", err)
			continue
		}
		n.readyTerm.Store(term)
		n.log.Info("leading", "term", term, "state_time", base)
		n.observeSkew(wall.Sub(base))
	}
}

// registrationLoop makes sure the replicated state knows this node's gRPC
// address (followers forward writes to the leader's) and its log version. A node asks the leader, through the same path as
// AddVoter, until its record is right.
func (n *Node) registrationLoop() {
	delay := 100 * time.Millisecond
	for {
		select {
		case <-n.closing:
			return
		case <-time.After(delay):
		}
		var m fsm.Member
		var ok bool
		n.machine.read(func(s *fsm.State) { m, ok = s.Member(n.cfg.ID) })
		if ok && m.GRPCAddr == n.AdvertiseGRPC() && m.RaftAddr == n.cfg.AdvertiseRaft && m.LogVersion == fsm.LogVersion {
			delay = 2 * time.Second
			continue
		}
		if _, in, _ := n.inConfig(n.cfg.ID); !in {
			delay = 500 * time.Millisecond
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ApplyTimeout)
		err := n.addVoter(ctx, n.cfg.ID, n.cfg.AdvertiseRaft, n.AdvertiseGRPC())
		cancel()
		if err != nil {
			n.log.Debug("registering own address", "err", err)
		}
		delay = 250 * time.Millisecond
	}
}

// stampLine is how a node stamps the commands it proposes: base plus the
// time its monotonic clock (Config.Monotonic) has measured since start.
// A Raft leader takes one per term, base fsm.LeaderBase when its barrier
// finished (term says which); a node on etcd one when it becomes ready,
// re-based on the replica's time (etcd.go). State time thus runs at the
// rate of the proposer's monotonic clock, whatever its wall clock does
// (cluster/DESIGN.md, "Time").
type stampLine struct {
	term  uint64
	base  time.Time
	start time.Time // a reading of Config.Monotonic
}

// at is the line's time when Config.Monotonic reads mono.
func (l *stampLine) at(mono time.Time) time.Time { return l.base.Add(mono.Sub(l.start)) }

// stampOn is fsm.LeaderStamp on line l at the state's time now, and the
// line to go on with (l itself unless the stamp re-based it: a racing
// proposal's re-base is as good).
func (n *Node) stampOn(l *stampLine, now time.Time) (time.Time, *stampLine) {
	mono := n.cfg.Monotonic()
	s, rebase := fsm.LeaderStamp(l.base, mono.Sub(l.start), now)
	if rebase {
		return s, &stampLine{term: l.term, base: s, start: mono}
	}
	return s, l
}

// clockSkewWarn is the skew between the leader's wall clock and its stamps
// above which it warns: the wall clock is behind the cluster's time, or
// ahead by more than one term may take, or has jumped within the term.
const clockSkewWarn = 10 * time.Second

// stamp is the time a command proposed now carries (fsm.LeaderStamp). A
// leader that is not ready in the current term yet stamps the time its
// replica already has, which moves nothing (Apply never moves time back).
func (n *Node) stamp() time.Time {
	var now time.Time
	n.machine.read(func(s *fsm.State) { now = s.Now() })
	c := n.stamps.Load()
	if c == nil || c.term != n.raft.CurrentTerm() {
		return now
	}
	s, next := n.stampOn(c, now)
	if next != c {
		// Idle for longer than fsm.MaxTimeStep: time moves by one step
		// and runs on from there.
		n.stamps.CompareAndSwap(c, next)
	}
	n.observeSkew(n.cfg.Clock().Sub(s))
	return s
}

// observeSkew exposes the leader's clock skew (wall clock minus stamp) and
// warns, at most once a minute, when it is large.
func (n *Node) observeSkew(skew time.Duration) {
	n.skew.Store(int64(skew))
	if skew.Abs() <= clockSkewWarn {
		return
	}
	now := time.Now().UnixNano()
	last := n.skewWarned.Load()
	if now-last < int64(time.Minute) || !n.skewWarned.CompareAndSwap(last, now) {
		return
	}
	n.log.Warn("leader's wall clock disagrees with the cluster's time; stamping the cluster's time",
		"skew", skew, "limit_per_term", fsm.MaxTimeStep)
}

// propose replicates one command through the log and returns the state
// machine's result. On Raft it must run on the leader, on etcd it runs on
// any ready node (etcdPropose). The proposer stamps the command here
// (stamp, etcdStamp); Apply never reads a clock.
func (n *Node) propose(ctx context.Context, payload proto.Message) (fsm.Result, error) {
	start := time.Now()
	c := fsm.Command{Payload: payload}
	if id, ok := ctx.Value(callerCtx{}).(auth.Identity); ok {
		c.Caller = id.String()
	} else if n.cfg.TLS != nil {
		// No call behind it: the node's own command (founding the
		// policy).
		c.Caller = n.cfg.TLS.Identity().String()
	}
	if n.etcd != nil {
		return n.etcdPropose(ctx, c, start)
	}
	c.Stamp = n.stamp()
	data, err := c.Encode()
	if err != nil {
		return fsm.Result{}, err
	}
	f := n.raft.Apply(data, timeoutOf(ctx, n.cfg.ApplyTimeout))
	if err := n.await(f); err != nil {
		return fsm.Result{}, raftError(err)
	}
	n.metrics.observePropose(c.Type(), start)
	res, ok := f.Response().(fsm.Result)
	if !ok {
		return fsm.Result{}, fmt.Errorf("cluster: unexpected apply response %T", f.Response())
	}
	return res, res.Err
}

// ID is the node id; RaftAddr and AdvertiseGRPC its advertised addresses.
func (n *Node) ID() string       { return n.cfg.ID }
func (n *Node) RaftAddr() string { return n.cfg.AdvertiseRaft }
func (n *Node) AdvertiseGRPC() string {
	if n.cfg.AdvertiseGRPC != "" {
		return n.cfg.AdvertiseGRPC
	}
	return n.grpcLis.Addr().String()
}

// HTTPAddr is the address the HTTP endpoint listens on, or "".
func (n *Node) HTTPAddr() string {
	if n.httpLis == nil {
		return ""
	}
	return n.httpLis.Addr().String()
}

// IsLeader reports whether this node is the Raft leader; never on the
// etcd store, which has no leader (every ready node proposes).
func (n *Node) IsLeader() bool { return n.etcd == nil && n.raft.State() == raft.Leader }

// State runs f with this node's replica of the state, locked for reading.
// f must not keep or modify what it reads beyond the stored values' use.
func (n *Node) State(f func(*fsm.State)) { n.machine.read(f) }

// Close stops the node: gRPC and HTTP first, then Raft, then the stores.
// It is safe to call more than once.
func (n *Node) Close() error {
	var err error
	n.closeOnce.Do(func() {
		close(n.closing)
		if n.grpc != nil {
			stopped := make(chan struct{})
			go func() { n.grpc.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(2 * time.Second):
				n.grpc.Stop()
			}
		}
		if n.dns != nil {
			_ = n.dns.Close()
		}
		if n.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = n.http.Shutdown(ctx)
			cancel()
		}
		if n.raft != nil {
			if e := n.raft.Shutdown().Error(); e != nil {
				err = e
			}
		}
		if n.etcd != nil {
			n.etcd.stop()
		}
		n.wg.Wait()
		if n.etcd != nil {
			n.etcd.close(n.log)
		}
		if n.transport != nil {
			_ = n.transport.Close()
		}
		if n.store != nil {
			if e := n.store.Close(); e != nil && err == nil {
				err = e
			}
		}
		n.connsMu.Lock()
		for _, c := range n.conns {
			_ = c.Close()
		}
		n.conns = nil
		n.connsMu.Unlock()
	})
	return err
}

// conn returns a cached client connection to another member's gRPC API.
func (n *Node) conn(addr string) (*grpc.ClientConn, error) {
	n.connsMu.Lock()
	defer n.connsMu.Unlock()
	if n.conns == nil {
		return nil, raft.ErrRaftShutdown
	}
	if c, ok := n.conns[addr]; ok {
		return c, nil
	}
	creds := insecure.NewCredentials()
	if n.cfg.TLS != nil {
		creds = credentials.NewTLS(n.cfg.TLS.ClientConfig(""))
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(contract.MaxMessageBytes), grpc.MaxCallSendMsgSize(contract.MaxMessageBytes)))
	if err != nil {
		return nil, err
	}
	n.conns[addr] = c
	return c, nil
}
