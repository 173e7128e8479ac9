package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsplan/dnsplan/cluster/dnsserver"
	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/internal/retry"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// dnsGate is the state of the rule that a node never answers older or
// emptier than it may (cluster/DESIGN.md, "DNS"). The update loop writes
// it; Status and the metrics read it.
type dnsGate struct {
	// floor is the log index the replica must reach before DNS answers,
	// valid once floorKnown is set: the recorded served index, or the
	// commit index the cluster reported (learnDNSFloor).
	floor      atomic.Uint64
	floorKnown atomic.Bool
	// ready is set once the replica has reached floor and DNS answers.
	ready atomic.Bool
	// served is the log index of the view DNS answers from.
	served atomic.Uint64
	// recordFailures counts failed writes of the served index; each one
	// holds the view back until a retry succeeds.
	recordFailures atomic.Uint64
}

// startDNS serves the node's zones over UDP and TCP from its local replica,
// so a node cut off from the leader keeps answering its last known state.
func (n *Node) startDNS() error {
	udp, tcp := n.cfg.DNSPacketConn, n.cfg.DNSListener
	if udp == nil && tcp == nil {
		if n.cfg.DNSAddr == "" {
			return nil
		}
		var err error
		if udp, err = net.ListenPacket("udp", n.cfg.DNSAddr); err != nil {
			return fmt.Errorf("cluster: dns udp listen: %w", err)
		}
		if tcp, err = net.Listen("tcp", n.cfg.DNSAddr); err != nil {
			udp.Close()
			return fmt.Errorf("cluster: dns tcp listen: %w", err)
		}
	}
	srv, err := dnsserver.New(dnsserver.Config{
		Zones:       n.cfg.Zones,
		NSNames:     n.cfg.NSNames,
		Logger:      n.cfg.Logger.With("component", "dns", "node", n.cfg.ID),
		Registerer:  n.metrics.registry,
		RateLimit:   n.cfg.DNSRateLimit,
		MaxTCPConns: n.cfg.DNSMaxTCPConns,
	})
	if err != nil {
		return err
	}
	n.dns = srv
	recorded, found, err := readServedIndex(n.cfg.DataDir)
	if err != nil {
		return err
	}
	n.registerDNSMetrics()
	if err := srv.Start(udp, tcp); err != nil {
		return err
	}
	n.dnsAddr = udp.LocalAddr().String()
	if found {
		n.dnsGate.floor.Store(recorded)
		n.dnsGate.floorKnown.Store(true)
	} else {
		n.goLoop(n.learnDNSFloor)
	}
	n.goLoop(func() { n.dnsUpdateLoop(recorded) })
	return nil
}

// learnDNSFloor sets the DNS floor of a node with no record of what it
// served (an empty data dir, a joining node, a lost file) to the commit
// index the cluster reports through ReadIndex. It asks every member it can
// name, itself first (it may lead, or know the leader), then the --join
// address, then the gRPC addresses in its replica's member records as they
// arrive, until one answers or the node closes. Until then DNS answers
// SERVFAIL: a node that never reaches the cluster never serves its empty
// replica.
func (n *Node) learnDNSFloor() {
	backoff := retry.Backoff{First: 100 * time.Millisecond, Limit: 2 * time.Second}
	for {
		var last error
		for _, addr := range n.floorSources() {
			ctx, cancel := n.callContext(n.cfg.ApplyTimeout)
			resp, err := n.askReadIndex(ctx, addr)
			cancel()
			if err != nil {
				last = err
				continue
			}
			n.dnsGate.floor.Store(resp.GetIndex())
			n.dnsGate.floorKnown.Store(true)
			n.log.Info("dns floor learned from the cluster", "floor", resp.GetIndex(), "leader", resp.GetLeaderId(), "via", cmp.Or(addr, "self"))
			return
		}
		n.log.Debug("dns floor: no member answered ReadIndex yet; answering SERVFAIL", "err", last)
		select {
		case <-n.closing:
			return
		case <-time.After(backoff.Pause()):
		}
	}
}

// floorSources lists where to ask for the floor: "" is this node itself.
func (n *Node) floorSources() []string {
	out := []string{""}
	seen := map[string]bool{"": true, n.AdvertiseGRPC(): true}
	add := func(addr string) {
		if !seen[addr] {
			seen[addr] = true
			out = append(out, addr)
		}
	}
	add(n.cfg.Join)
	n.machine.read(func(s *fsm.State) {
		for _, m := range s.Members() {
			add(m.GRPCAddr)
		}
	})
	return out
}

// askReadIndex calls ReadIndex on this node ("") or on the member at addr
// (which forwards it to the leader).
func (n *Node) askReadIndex(ctx context.Context, addr string) (*pb.ReadIndexResponse, error) {
	if addr == "" {
		return n.readIndex(ctx)
	}
	conn, err := n.conn(addr)
	if err != nil {
		return nil, err
	}
	return pb.NewClusterServiceClient(conn).ReadIndex(ctx, &pb.ReadIndexRequest{})
}

// caughtUp reports whether a replica whose state has applied up to index
// holds every entry up to floor. A floor learned from the cluster is a
// commit index, which may be one of Raft's own entries (a new leader's
// no-op or barrier, a configuration change) that never reaches the state
// machine; so once Raft has handed every entry up to floor to the state
// machine, the replica is there when it holds the last command at or below
// floor. lastCommand caches that index, which never changes once found.
func (n *Node) caughtUp(index, floor uint64, lastCommand *uint64) bool {
	if index >= floor {
		return true
	}
	if n.etcd != nil {
		// Every entry of the etcd log is a command: the floor is one.
		return false
	}
	if n.raft.AppliedIndex() < floor {
		return false
	}
	if *lastCommand == 0 {
		c, err := n.lastCommandAtOrBelow(floor)
		if err != nil {
			n.log.Warn("dns floor: reading the log", "floor", floor, "err", err)
			return false
		}
		*lastCommand = c
	}
	return index >= *lastCommand
}

// lastCommandAtOrBelow is the index of the newest state-machine command at
// or below floor in the local log, which holds every entry Raft has
// applied; 0 if there is none above the log's compacted start, which a
// snapshot the state already holds covers.
func (n *Node) lastCommandAtOrBelow(floor uint64) (uint64, error) {
	var l raft.Log
	for i := floor; i > 0; i-- {
		err := n.store.GetLog(i, &l)
		if errors.Is(err, raft.ErrLogNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		if l.Type == raft.LogCommand {
			return i, nil
		}
	}
	return 0, nil
}

// registerDNSMetrics exposes the gate on /metrics.
func (n *Node) registerDNSMetrics() {
	g := &n.dnsGate
	n.metrics.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dnsplan_dns_ready",
			Help: "1 once this node's DNS answers for its zones; 0 while it answers SERVFAIL until its replica reaches the floor.",
		}, func() float64 { return boolFloat(g.ready.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dnsplan_dns_floor_index",
			Help: "Log index the replica must reach before DNS answers.",
		}, func() float64 { return float64(g.floor.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dnsplan_dns_served_index",
			Help: "Log index of the state DNS answers from.",
		}, func() float64 { return float64(g.served.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "dnsplan_dns_record_failures_total",
			Help: "Failed writes of the served index; DNS keeps its previous view until one succeeds.",
		}, func() float64 { return float64(g.recordFailures.Load()) }),
	)
}

// dnsUpdateLoop hands the DNS server a fresh view after every change to
// the replica. The change channel is taken before reading, so none is lost.
//
// A restarted node's replica starts from its last snapshot and only moves
// on once it learns from a leader what is committed, so it can be older
// than what the node served before it stopped. Serving it would take the
// node's answers back to an older generation (I1), or empty (I2). So each
// node records the log index its DNS serves (a small file in the data dir,
// written durably *before* the view that needs it is served) and, after a
// restart, serves nothing (SERVFAIL: resolvers go to another node) until
// its replica has caught up to that index. recorded is the index the file
// holds at start.
func (n *Node) dnsUpdateLoop(recorded uint64) {
	g := &n.dnsGate
	// again paces new attempts after a failed record; nil when none is due.
	var again <-chan time.Time
	backoff := retry.Backoff{First: 50 * time.Millisecond, Limit: 5 * time.Second}
	// caught is set once the replica has reached the floor; ready (what
	// Status reports) once the first view is served after that.
	caught := false
	var lastCommand uint64 // see caughtUp
	for {
		ch, index := n.machine.changed()
		// poll wakes the loop while DNS waits for its floor: the floor may
		// be learned, or Raft may apply entries the state never sees,
		// without the replica changing.
		var poll <-chan time.Time
		if !caught {
			if g.floorKnown.Load() && n.caughtUp(index, g.floor.Load(), &lastCommand) {
				caught = true
				n.log.Info("dns: the replica has reached its floor", "floor", g.floor.Load(), "index", index)
			} else {
				poll = time.After(50 * time.Millisecond)
			}
		}
		// While a failed record waits for its retry, changes only pile up:
		// the retry writes the newest index.
		if caught && again == nil && (!g.ready.Load() || index > g.served.Load()) {
			var applied []*pb.AppliedEndpoint
			n.machine.read(func(s *fsm.State) { applied, index = s.AppliedAll(), s.LastIndex() })
			// Record first, then serve: a crash between the two leaves a
			// record ahead of what was served, which only lengthens the
			// wait after a restart; the other order could serve older.
			// One write covers every change since the last view, so the
			// fsync costs one per view, not one per entry.
			ok := true
			if index > recorded {
				if err := writeServedIndex(n.cfg.DataDir, index); err != nil {
					g.recordFailures.Add(1)
					n.log.Error("cannot record the index DNS would serve; keeping the previous view", "index", index, "served", g.served.Load(), "err", err)
					again = time.After(backoff.Pause())
					ok = false
				} else {
					recorded = index
					backoff.Reset()
				}
			}
			if ok {
				n.dns.Update(applied)
				g.served.Store(index)
				g.ready.Store(true)
			}
		}
		select {
		case <-ch:
		case <-again:
			again = nil
		case <-poll:
		case <-n.closing:
			return
		}
	}
}

// servedIndexFile holds the log index of the state DNS serves.
const servedIndexFile = "dns-served-index"

// readServedIndex returns the recorded index; found is false when there is
// no record (an empty data dir, or a node that never served).
func readServedIndex(dir string) (index uint64, found bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, servedIndexFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("cluster: reading %s: %w", servedIndexFile, err)
	}
	index, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("cluster: %s holds %q: %w", servedIndexFile, b, err)
	}
	return index, true, nil
}

// writeServedIndex replaces the file durably: write a temporary file, sync
// it, rename it over the old one and sync the directory, so that after a
// crash or a power loss the file holds this index or a later one.
func writeServedIndex(dir string, index uint64) error {
	tmp := filepath.Join(dir, servedIndexFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = f.WriteString(strconv.FormatUint(index, 10) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, servedIndexFile)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// dnsStatus fills the DNS fields of a Status answer.
func (n *Node) dnsStatus(resp *pb.StatusResponse) {
	g := &n.dnsGate
	resp.DnsReady = g.ready.Load()
	resp.DnsFloor = g.floor.Load()
	resp.DnsServedIndex = g.served.Load()
}

// DNSAddr is the address the DNS server answers on, or "".
func (n *Node) DNSAddr() string { return n.dnsAddr }
