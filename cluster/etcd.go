package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/cluster/etcdlog"
	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/internal/retry"
	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// The etcd store: the same state machine on a log kept in etcd
// (cluster/etcdlog) instead of Raft's. Every node appends its own
// proposals, reads the log in order and applies every entry to its replica
// with the same machine; there is no leader. cluster/DESIGN.md, "The etcd
// store", gives the reasons; this file is that design's code. The gRPC
// services, DNS and the method table reach it only through the core and
// the few places that ask which store runs (n.etcd != nil).

// Store names the log under the state machine.
type Store string

// The stores.
const (
	StoreRaft Store = "raft"
	StoreEtcd Store = "etcd"
)

// ParseStore reads a store's name.
func ParseStore(s string) (Store, error) {
	switch Store(s) {
	case StoreRaft, StoreEtcd:
		return Store(s), nil
	}
	return "", fmt.Errorf("cluster: store %q is not raft or etcd", s)
}

// EtcdConfig is how a node on the etcd store reaches etcd.
type EtcdConfig struct {
	// Endpoints are the client URLs of the etcd members (required).
	Endpoints []string
	// Prefix is the key prefix of the log (default etcdlog.DefaultPrefix).
	Prefix string
	// TLS, if set, is the client TLS configuration for etcd (its CA, and
	// a client certificate if etcd asks for one); nil speaks plaintext.
	TLS *tls.Config
	// Username and Password authenticate to etcd (RBAC), if set.
	Username, Password string
	// Timeout bounds each operation against etcd (default
	// etcdlog.DefaultTimeout); an operation that runs out answers
	// UNAVAILABLE.
	Timeout time.Duration
	// MemberTTL is the TTL of the node's registration (default 5s): a
	// node that dies leaves the registry that long after.
	MemberTTL time.Duration
	// ContactEvery is how often the node reads the log's head from an
	// etcd quorum, to know it is in touch and to do the cluster's chores
	// (default 250ms).
	ContactEvery time.Duration
}

// checkStore validates the store's configuration.
func (c *Config) checkStore() error {
	if _, err := ParseStore(string(c.Store)); err != nil {
		return err
	}
	if c.Store == StoreRaft {
		if len(c.Etcd.Endpoints) > 0 {
			return errors.New("cluster: etcd endpoints are given but the store is raft (--store etcd uses them)")
		}
		return nil
	}
	switch {
	case len(c.Etcd.Endpoints) == 0:
		return errors.New("cluster: the etcd store needs etcd endpoints (--etcd-endpoints)")
	case len(c.InitialCluster) > 0 || c.Join != "":
		return errors.New("cluster: --initial-cluster and --join are for the raft store; nodes on etcd join by naming the same etcd endpoints and prefix")
	case (c.Etcd.Username == "") != (c.Etcd.Password == ""):
		return errors.New("cluster: give both an etcd username and password, or neither")
	}
	if c.Etcd.Prefix == "" {
		c.Etcd.Prefix = etcdlog.DefaultPrefix
	}
	if c.Etcd.Timeout == 0 {
		c.Etcd.Timeout = etcdlog.DefaultTimeout
	}
	if c.Etcd.MemberTTL == 0 {
		c.Etcd.MemberTTL = 5 * time.Second
	}
	if c.Etcd.ContactEvery == 0 {
		c.Etcd.ContactEvery = 250 * time.Millisecond
	}
	return nil
}

// ErrNotReady: a node on the etcd store cannot serve the request yet (its
// replica has not caught up with the log, or did not apply a proposal in
// time). It becomes UNAVAILABLE; the client retries, here or elsewhere.
var ErrNotReady = errors.New("node not ready")

// entryFormat is the first byte of every entry the node appends: the
// framing [format][proposal id][command].
const entryFormat = 1

// proposalID names one proposal, so that the proposer learns its result
// from its own replica's apply (cluster/DESIGN.md, "How a proposer learns
// its result").
type proposalID [16]byte

// etcdStore is a node's side of the etcd log.
type etcdStore struct {
	cfg EtcdConfig
	cli *clientv3.Client
	log *etcdlog.Log
	// cancel ends the reader, the contact loop and the registration.
	cancel context.CancelFunc
	ctx    context.Context

	// mu guards pos, the position of the last entry the replica applied,
	// and makes applying an entry and moving pos one step, so that a
	// snapshot taken under it is the state at pos.
	mu  sync.Mutex
	pos etcdlog.Position

	// waitMu guards waiters: proposals of this node waiting for their
	// entry to be applied here.
	waitMu  sync.Mutex
	waiters map[proposalID]chan fsm.Result

	// ready is set once the replica has applied the log up to the
	// linearizable revision read after the node started (its barrier);
	// from then on the node stamps with line and proposes.
	ready atomic.Bool
	line  atomic.Pointer[stampLine]

	// contact is when an etcd quorum last answered (Unix nanoseconds);
	// linearizable the newest linearizable revision read.
	contact      atomic.Int64
	linearizable atomic.Int64
	// members are the registered members, as last read.
	members atomic.Pointer[[]etcdMember]
	// snapshot is the position of the newest snapshot this node wrote or
	// restored.
	snapshotSeq, snapshotRev atomic.Int64

	reg atomic.Pointer[etcdlog.Registration]
}

// etcdMember is a node's registration in the etcd registry.
type etcdMember struct {
	ID         string `json:"-"`
	GRPCAddr   string `json:"grpc_addr"`
	LogVersion uint32 `json:"log_version"`
}

// startOnEtcd is Start for the etcd store: the client, the gRPC API, DNS
// and HTTP, then the reader, the contact loop and the registration in the
// background, so a node starts (and serves its DNS floor's SERVFAIL) while
// etcd is out of reach.
func (n *Node) startOnEtcd() (*Node, error) {
	cfg := n.cfg
	if cfg.RaftListener != nil {
		// Handed over by a launcher that reserves ports for both stores.
		_ = cfg.RaftListener.Close()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("cluster: data dir: %w", err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Etcd.Endpoints,
		DialTimeout:          cfg.Etcd.Timeout,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		TLS:                  cfg.Etcd.TLS,
		Username:             cfg.Etcd.Username,
		Password:             cfg.Etcd.Password,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: etcd client: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &etcdStore{
		cfg:     cfg.Etcd,
		cli:     cli,
		log:     etcdlog.New(cli, etcdlog.Config{Prefix: cfg.Etcd.Prefix, Timeout: cfg.Etcd.Timeout, Logger: cfg.Logger.With("node", cfg.ID)}),
		ctx:     ctx,
		cancel:  cancel,
		waiters: map[proposalID]chan fsm.Result{},
	}
	s.members.Store(&[]etcdMember{})
	n.etcd = s
	n.log = n.log.With("store", "etcd")
	if err := n.startGRPC(); err != nil {
		n.Close()
		return nil, err
	}
	if err := n.startDNS(); err != nil {
		n.Close()
		return nil, err
	}
	if err := n.startHTTP(); err != nil {
		n.Close()
		return nil, err
	}
	n.goLoop(n.etcdReadLoop)
	n.goLoop(n.etcdContactLoop)
	n.goLoop(n.etcdRegisterLoop)
	n.goLoop(n.refusalLoop)
	n.goLoop(func() { n.policyLoop(nil) })
	n.log.Info("started on the etcd store", "endpoints", cfg.Etcd.Endpoints, "prefix", cfg.Etcd.Prefix)
	return n, nil
}

// stop ends the store's background work; Close then waits for it.
func (s *etcdStore) stop() { s.cancel() }

// close revokes the registration (the node leaves the registry at once)
// and closes the client, once the background loops have ended.
func (s *etcdStore) close(log *slog.Logger) {
	if r := s.reg.Load(); r != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := r.Close(ctx); err != nil {
			log.Debug("leaving the etcd registry", "err", err)
		}
		cancel()
	}
	_ = s.cli.Close()
}

// position is the replica's position in the log.
func (s *etcdStore) position() etcdlog.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pos
}

// inTouch reports whether an etcd quorum answered within d.
func (s *etcdStore) inTouch(d time.Duration) bool {
	c := s.contact.Load()
	return c != 0 && time.Since(time.Unix(0, c)) <= d
}

func (s *etcdStore) touched(rev int64) {
	s.contact.Store(time.Now().UnixNano())
	for {
		old := s.linearizable.Load()
		if rev <= old || s.linearizable.CompareAndSwap(old, rev) {
			return
		}
	}
}

// etcdReadLoop applies the log to the replica, in order, for the node's
// life. etcdlog.Read retries by itself while etcd is out of reach; it
// returns ErrCompacted when the entries the replica needs next were
// removed below a snapshot (the replica then restores the newest one and
// reads on from there), and ErrInconsistent, or an entry that does not
// decode, stops the node: its replica could no longer follow the log
// without diverging.
func (n *Node) etcdReadLoop() {
	s := n.etcd
	backoff := retry.Backoff{First: 50 * time.Millisecond, Limit: 2 * time.Second}
	for {
		err := s.log.Read(s.ctx, s.position(), n.applyEtcdEntry)
		switch {
		case s.ctx.Err() != nil:
			return
		case errors.Is(err, etcdlog.ErrCompacted):
			if err := n.restoreEtcdSnapshot(); err != nil {
				n.log.Warn("restoring the newest snapshot from etcd", "err", err)
				if retry.Sleep(s.ctx, backoff.Pause()) != nil {
					return
				}
				continue
			}
			backoff.Reset()
		default:
			n.fail(fmt.Errorf("cluster: the etcd log cannot be applied: %w", err))
			return
		}
	}
}

// restoreEtcdSnapshot swaps in the newest snapshot in etcd, if it is ahead
// of the replica.
func (n *Node) restoreEtcdSnapshot() error {
	s := n.etcd
	snap, err := s.log.NewestSnapshot(s.ctx)
	if err != nil {
		return err
	}
	st, err := fsm.Restore(snap.Data)
	if err != nil {
		return fmt.Errorf("cluster: etcd snapshot at revision %d: %w", snap.Revision, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if snap.Seq <= s.pos.Seq {
		return fmt.Errorf("cluster: the newest snapshot (seq %d) is not ahead of the replica (seq %d)", snap.Seq, s.pos.Seq)
	}
	n.machine.swap(st)
	s.pos = snap.Position
	s.snapshotSeq.Store(int64(snap.Seq))
	s.snapshotRev.Store(snap.Revision)
	n.log.Info("restored a snapshot from etcd", "seq", snap.Seq, "revision", snap.Revision)
	n.rebaseLine(fsm.Result{})
	return nil
}

// applyEtcdEntry applies one entry of the log at its revision and hands
// the result to the proposal waiting for it here, if any.
func (n *Node) applyEtcdEntry(e etcdlog.Entry) error {
	s := n.etcd
	if len(e.Data) < 1+len(proposalID{}) || e.Data[0] != entryFormat {
		return fmt.Errorf("entry %d (revision %d): unknown framing", e.Seq, e.Revision)
	}
	var id proposalID
	copy(id[:], e.Data[1:])
	cmd, err := fsm.Decode(e.Data[1+len(id):])
	if err != nil {
		return fmt.Errorf("entry %d (revision %d): %w", e.Seq, e.Revision, err)
	}
	s.mu.Lock()
	res := n.machine.apply(uint64(e.Revision), cmd)
	s.pos = e.Position
	s.mu.Unlock()
	n.rebaseLine(res)
	s.waitMu.Lock()
	ch, ok := s.waiters[id]
	delete(s.waiters, id)
	s.waitMu.Unlock()
	if ok {
		ch <- res // buffered: the waiter may have gone
	}
	return nil
}

// rebaseLine keeps the stamping line no earlier than the newest time the
// replica has seen: when the replica's time is ahead of the line (another
// node stamped later), or an entry moved time by a jump (an idle stretch
// ended), the line restarts at the replica's time (cluster/DESIGN.md,
// "Time", rule 2).
func (n *Node) rebaseLine(res fsm.Result) {
	s := n.etcd
	l := s.line.Load()
	if l == nil {
		return
	}
	var now time.Time
	n.machine.read(func(st *fsm.State) { now = st.Now() })
	if mono := n.cfg.Monotonic(); res.TimeJump > 0 || now.After(l.at(mono)) {
		s.line.CompareAndSwap(l, &stampLine{base: now, start: mono})
	}
}

// etcdStamp is the time a proposal made now carries.
func (n *Node) etcdStamp() time.Time {
	s := n.etcd
	var now time.Time
	n.machine.read(func(st *fsm.State) { now = st.Now() })
	l := s.line.Load()
	stamp, next := n.stampOn(l, now)
	if next != l {
		s.line.CompareAndSwap(l, next)
	}
	n.observeSkew(n.cfg.Clock().Sub(stamp))
	return stamp
}

// etcdPropose appends c to the log and waits until this node's replica has
// applied it, then returns its result. A node not ready does not propose.
// An append that failed with etcdlog.ErrUnavailable has an unknown outcome
// and answers UNAVAILABLE; every write is safe to retry.
func (n *Node) etcdPropose(ctx context.Context, c fsm.Command, start time.Time) (fsm.Result, error) {
	s := n.etcd
	if !s.ready.Load() {
		return fsm.Result{}, fmt.Errorf("%w: node %s has not caught up with the etcd log yet", ErrNotReady, n.cfg.ID)
	}
	c.Stamp = n.etcdStamp()
	data, err := c.Encode()
	if err != nil {
		return fsm.Result{}, err
	}
	var id proposalID
	_, _ = rand.Read(id[:])
	entry := make([]byte, 0, 1+len(id)+len(data))
	entry = append(append(append(entry, entryFormat), id[:]...), data...)
	ch := make(chan fsm.Result, 1)
	s.waitMu.Lock()
	s.waiters[id] = ch
	s.waitMu.Unlock()
	defer func() {
		s.waitMu.Lock()
		delete(s.waiters, id)
		s.waitMu.Unlock()
	}()
	at, err := s.log.Append(ctx, entry)
	if err != nil {
		return fsm.Result{}, err
	}
	timer := time.NewTimer(timeoutOf(ctx, n.cfg.ApplyTimeout))
	defer timer.Stop()
	select {
	case res := <-ch:
		n.metrics.observePropose(c.Type(), start)
		return res, res.Err
	case <-timer.C:
		return fsm.Result{}, fmt.Errorf("%w: appended at revision %d, not applied on node %s in time", ErrNotReady, at.Revision, n.cfg.ID)
	case <-ctx.Done():
		return fsm.Result{}, ctx.Err()
	case <-n.closing:
		return fsm.Result{}, fmt.Errorf("%w: node %s is closing", ErrNotReady, n.cfg.ID)
	}
}

// etcdBarrier makes a read linearizable: the revision of the log's newest
// entry, read from an etcd quorum, then a wait until the replica has
// applied it (cluster/DESIGN.md, "Linearizable reads").
func (n *Node) etcdBarrier(ctx context.Context) error {
	s := n.etcd
	rev, err := s.log.LinearizableRevision(ctx)
	if err != nil {
		return err
	}
	s.touched(rev)
	return n.waitApplied(ctx, uint64(rev))
}

// waitApplied waits, within ctx's deadline (or ApplyTimeout), until the
// replica has applied index.
func (n *Node) waitApplied(ctx context.Context, index uint64) error {
	timer := time.NewTimer(timeoutOf(ctx, n.cfg.ApplyTimeout))
	defer timer.Stop()
	for {
		ch, applied := n.machine.changed()
		if applied >= index {
			return nil
		}
		select {
		case <-ch:
		case <-timer.C:
			return fmt.Errorf("%w: node %s's replica is at revision %d, the log at %d", ErrNotReady, n.cfg.ID, applied, index)
		case <-ctx.Done():
			return ctx.Err()
		case <-n.closing:
			return fmt.Errorf("%w: node %s is closing", ErrNotReady, n.cfg.ID)
		}
	}
}

// etcdContactLoop reads the log's head from an etcd quorum every
// ContactEvery: it tells the node it is in touch (watches end on a node
// that is not, as on Raft), makes the node ready once its replica reached
// the head read after it started, refreshes the registry, and does the
// cluster's chores on the member that owns them.
func (n *Node) etcdContactLoop() {
	s := n.etcd
	tick := time.NewTicker(s.cfg.ContactEvery)
	defer tick.Stop()
	var lastMembers, lastChores time.Time
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		rev, err := s.log.LinearizableRevision(s.ctx)
		if err != nil {
			n.log.Debug("etcd: reading the log's head", "err", err)
			continue
		}
		s.touched(rev)
		if !s.ready.Load() {
			var applied uint64
			var now time.Time
			n.machine.read(func(st *fsm.State) { applied, now = st.LastIndex(), st.Now() })
			if applied < uint64(rev) {
				continue
			}
			// The barrier: every entry appended before the node started
			// is applied, so the replica's time is the cluster's.
			base := fsm.LeaderBase(now, n.cfg.Clock())
			s.line.Store(&stampLine{base: base, start: n.cfg.Monotonic()})
			s.ready.Store(true)
			n.log.Info("ready: the replica has caught up with the etcd log", "revision", rev, "state_time", base)
		}
		if time.Since(lastMembers) >= time.Second {
			if err := n.refreshMembers(); err == nil {
				lastMembers = time.Now()
			}
		}
		if time.Since(lastChores) >= time.Second && n.ownsChores() {
			lastChores = time.Now()
			n.etcdChores()
		}
	}
}

// refreshMembers reads the registry.
func (n *Node) refreshMembers() error {
	s := n.etcd
	ms, err := s.log.Members(s.ctx)
	if err != nil {
		return err
	}
	out := make([]etcdMember, 0, len(ms))
	for _, m := range ms {
		var em etcdMember
		if err := json.Unmarshal(m.Info, &em); err != nil {
			n.log.Warn("etcd registry: unreadable registration", "member", m.ID, "err", err)
		}
		em.ID = m.ID
		out = append(out, em)
	}
	s.members.Store(&out)
	return nil
}

// ownsChores says whether this node does the cluster's chores: it is
// ready and the live member with the lowest id (the registry is ordered by
// id). Two nodes that both believe so for a moment do them twice, which
// changes nothing (cluster/DESIGN.md, "One node for the cluster's chores").
func (n *Node) ownsChores() bool {
	s := n.etcd
	ms := *s.members.Load()
	return s.ready.Load() && len(ms) > 0 && ms[0].ID == n.cfg.ID
}

// etcdChores founds the cluster's policy, activates the log version every
// member applies, and writes a snapshot and compacts the log once
// SnapshotThreshold entries have been appended since the last one.
func (n *Node) etcdChores() {
	s := n.etcd
	ctx, cancel := context.WithTimeout(s.ctx, n.cfg.ApplyTimeout)
	defer cancel()
	if err := n.foundPolicy(ctx); err != nil {
		n.log.Warn("founding the cluster's policy failed", "err", err)
		return
	}
	ms := *s.members.Load()
	var active uint32
	n.machine.read(func(st *fsm.State) { active = st.LogVersion() })
	if active < fsm.LogVersion && len(ms) > 0 && !slices.ContainsFunc(ms, func(m etcdMember) bool { return m.LogVersion < fsm.LogVersion }) {
		if _, err := n.propose(ctx, &statev1.ActivateLog{Version: fsm.LogVersion}); err != nil {
			n.log.Debug("activating log version", "version", fsm.LogVersion, "err", err)
		} else {
			n.log.Info("log version active: every registered member applies it", "version", fsm.LogVersion)
		}
	}
	threshold := int64(n.cfg.SnapshotThreshold)
	if threshold == 0 {
		threshold = 8192
	}
	if int64(s.position().Seq)-s.snapshotSeq.Load() >= threshold {
		if err := n.etcdSnapshot(ctx); err != nil {
			n.log.Warn("etcd snapshot", "err", err)
		}
	}
}

// etcdSnapshot writes the replica's state at its position to etcd and
// removes what it makes unneeded (etcdlog.Compact).
func (n *Node) etcdSnapshot(ctx context.Context) error {
	s := n.etcd
	s.mu.Lock()
	var st *fsm.State
	n.machine.read(func(state *fsm.State) { st = state.Clone() })
	at := s.pos
	s.mu.Unlock()
	b, err := st.Marshal()
	if err != nil {
		return err
	}
	if err := s.log.WriteSnapshot(ctx, at, b); err != nil {
		return err
	}
	s.snapshotSeq.Store(int64(at.Seq))
	s.snapshotRev.Store(at.Revision)
	p, err := s.log.Compact(ctx)
	if err != nil {
		return err
	}
	n.log.Info("wrote a snapshot to etcd and compacted the log", "seq", at.Seq, "revision", at.Revision, "compacted_to", p.Seq, "bytes", len(b))
	return nil
}

// etcdRegisterLoop registers the node in the registry (its gRPC address
// and log version), retrying until etcd answers; the registration then
// keeps itself alive and registers again after an outage
// (etcdlog.Registration).
func (n *Node) etcdRegisterLoop() {
	s := n.etcd
	info, err := json.Marshal(etcdMember{GRPCAddr: n.AdvertiseGRPC(), LogVersion: fsm.LogVersion})
	if err != nil {
		n.fail(err)
		return
	}
	backoff := retry.Backoff{First: 100 * time.Millisecond, Limit: 2 * time.Second}
	for {
		r, err := s.log.Register(s.ctx, n.cfg.ID, info, s.cfg.MemberTTL)
		if err == nil {
			s.reg.Store(r)
			_ = n.refreshMembers()
			n.etcdRecordMemberLoop()
			return
		}
		if s.ctx.Err() != nil {
			return
		}
		n.log.Debug("etcd registry: registering", "err", err)
		if retry.Sleep(s.ctx, backoff.Pause()) != nil {
			return
		}
	}
}

// etcdNoRaftAddr is the Raft address a node on etcd records in the
// replicated state's members: it has none.
const etcdNoRaftAddr = "-"

// etcdRecordMemberLoop keeps this node in the replicated state's members
// (statev1.SetMember), as a Raft node's registration does through
// AddVoter, checking every second: the state's members are what a
// read-back report of doubt is judged against (max_read_back_failures),
// and with none, reports never freeze. The registry says who is alive;
// the state's record stays when a node dies, as a Raft voter does, until
// RemoveServer.
func (n *Node) etcdRecordMemberLoop() {
	s := n.etcd
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if s.ready.Load() && s.inTouch(3*s.cfg.ContactEvery+time.Second) {
			var m fsm.Member
			var ok bool
			n.machine.read(func(st *fsm.State) { m, ok = st.Member(n.cfg.ID) })
			if !ok || m.RaftAddr != etcdNoRaftAddr || m.GRPCAddr != n.AdvertiseGRPC() || m.LogVersion != fsm.LogVersion {
				ctx, cancel := context.WithTimeout(s.ctx, n.cfg.ApplyTimeout)
				_, err := n.propose(ctx, &statev1.SetMember{Id: n.cfg.ID, RaftAddr: etcdNoRaftAddr, GrpcAddr: n.AdvertiseGRPC(), LogVersion: fsm.LogVersion})
				cancel()
				if err != nil {
					n.log.Debug("recording this node in the state's members", "err", err)
				}
			}
		}
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// etcdState is what Status says of a node on etcd in place of a Raft
// state: Ready (it proposes and serves linearizable reads), CatchingUp
// (its replica has not reached the log's head since it started), or
// Unavailable (no etcd quorum answered within three contact intervals and
// a second).
func (s *etcdStore) state() string {
	switch {
	case !s.inTouch(3*s.cfg.ContactEvery + time.Second):
		return EtcdUnavailable
	case !s.ready.Load():
		return EtcdCatchingUp
	}
	return EtcdReady
}

// The states Status reports for a node on the etcd store (etcdStore.state).
const (
	EtcdReady       = "Ready"
	EtcdCatchingUp  = "CatchingUp"
	EtcdUnavailable = "Unavailable"
)

// etcdStatus is Status on etcd: no leader and no term; commit_index is
// the newest linearizable revision read (the log's head), applied_index
// the revision of the replica's last entry, last_snapshot_index the
// revision of the newest snapshot this node wrote or restored, and the
// members are the live registry.
func (n *Node) etcdStatus() (*pb.StatusResponse, error) {
	s := n.etcd
	resp := &pb.StatusResponse{
		Store:             string(StoreEtcd),
		NodeId:            n.cfg.ID,
		State:             s.state(),
		CommitIndex:       uint64(s.linearizable.Load()),
		LastSnapshotIndex: uint64(s.snapshotRev.Load()),
		Legacy:            n.cfg.Legacy,
	}
	n.dnsStatus(resp)
	n.machine.read(func(st *fsm.State) {
		resp.AppliedIndex = st.LastIndex()
		resp.Frozen, resp.FreezeReason = st.Frozen()
		resp.LogVersion, resp.NodeLogVersion = st.LogVersion(), fsm.LogVersion
		resp.Config = st.Config()
		resp.NextGeneration = st.NextGeneration()
		resp.Plans = uint32(st.NumPlans())
		resp.Endpoints = uint32(st.NumApplied())
	})
	for _, m := range *s.members.Load() {
		resp.Members = append(resp.Members, &pb.Member{Id: m.ID, GrpcAddr: m.GRPCAddr, LogVersion: m.LogVersion})
	}
	return resp, nil
}

// errNoLeaderOnEtcd answers the Raft-only membership and leadership
// operations on the etcd store.
func errNoLeaderOnEtcd(what string) error {
	return status.Errorf(codes.FailedPrecondition, "%s: this node runs on the etcd store, which has no dnsplan leader and no Raft configuration: nodes join by starting on the same etcd endpoints and prefix, and leave by stopping (etcd's own leader moves with etcdctl move-leader)", what)
}
