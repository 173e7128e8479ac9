package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/cluster/dnsserver"
	"github.com/dnsplan/dnsplan/cluster/fsm"
)

// fatalCloseWait bounds how long a node that stopped itself may take to
// close before the process exits.
const fatalCloseWait = 10 * time.Second

func runNode(ctx context.Context, args []string, _, stderr io.Writer) error {
	cfg, err := nodeConfig(args, stderr)
	if err != nil {
		return err
	}
	logger := cfg.Logger
	n, err := cluster.Start(cfg)
	if err != nil {
		return err
	}
	if cfg.TLS == nil {
		logger.Warn("INSECURE: --insecure runs the API and the Raft port in plaintext, unauthenticated; anyone who reaches them can change what DNS serves")
	} else {
		logger.Info("mutual TLS on the API and the Raft port", "identity", cfg.TLS.Identity())
		reloadTLS(ctx, cfg.TLS, logger)
	}
	if cfg.Legacy {
		logger.Warn("LEGACY MODE: this node accepts the unsafe apply and clean-up that emptied DNS in the AWS outage; for demonstration only")
	}
	logger.Info("node started", "id", cfg.ID, "raft", n.RaftAddr(), "grpc", n.AdvertiseGRPC(), "dns", n.DNSAddr(), "http", n.HTTPAddr(), "data_dir", cfg.DataDir)
	select {
	case <-ctx.Done():
	case err := <-n.Fatal():
		// The node stopped itself (its design disagrees with the
		// cluster's); the process exits non-zero with the reason, after
		// the node finished closing or, should closing hang, after a
		// bound: the reason matters more than a clean close.
		closed := make(chan struct{})
		go func() { _ = n.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(fatalCloseWait):
			logger.Warn("the node did not finish closing; exiting anyway", "waited", fatalCloseWait)
		}
		return err
	}
	logger.Info("node stopping", "id", cfg.ID)
	return n.Close()
}

// nodeConfig turns the node's flags (and DNSPLAN_* variables) into the
// cluster's configuration, values as given.
func nodeConfig(args []string, stderr io.Writer) (cluster.Config, error) {
	fs := newFlagSet("node", stderr)
	var (
		cfg                 cluster.Config
		initialCluster      string
		logLevel            string
		logFormat           string
		maxDrop             float64
		maxVelocityRefusals uint
		err                 error
	)
	fs.StringVar(&cfg.ID, "id", "", "node id, unique in the cluster (required)")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "Raft log, stable store and snapshots (default ./data/<id>)")
	fs.StringVar(&cfg.RaftAddr, "raft-addr", "127.0.0.1:7001", "Raft transport (TCP) listen address")
	fs.StringVar(&cfg.AdvertiseRaft, "advertise-raft", "", "address peers use to reach this node's Raft port (default --raft-addr)")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", "127.0.0.1:9001", "gRPC API listen address")
	fs.StringVar(&cfg.AdvertiseGRPC, "advertise-grpc", "", "address others use to reach this node's gRPC port (default --grpc-addr)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8001", "/metrics, /healthz, /readyz and status page; empty disables")
	fs.StringVar(&cfg.DNSAddr, "dns-addr", "127.0.0.1:5301", "authoritative DNS listen address (UDP and TCP); empty disables")
	zones := newListFlag("dnsplan.test.")
	fs.Var(zones, "zone", "authoritative zone, repeatable (default dnsplan.test.)")
	nsNames := newListFlag()
	fs.Var(nsNames, "ns", "NS name served at each zone apex, repeatable (default ns1.<zone>)")
	fs.StringVar(&initialCluster, "initial-cluster", "", "id=raftaddr,... of the founding members; ignored when the data dir holds state")
	fs.StringVar(&cfg.Join, "join", "", "gRPC address of a member to ask to add this node as a voter")
	fs.Float64Var(&maxDrop, "max-capacity-drop", fsm.DefaultMaxCapacityDrop, "velocity limit a new cluster is founded with: largest fraction (0..1) of an endpoint's served capacity that may be removed within the velocity window without force (0: none, 1: no limit); afterwards the cluster's value applies (dnsplan ctl config)")
	fs.Float64Var(&cfg.MaxPlanChange, "max-plan-change", fsm.DefaultMaxPlanChange, "freeze on doubt a new cluster is founded with: the largest fraction (0..1] of all endpoints a plan may change at once before the cluster stores it for review and freezes itself (1: no limit); afterwards the cluster's value applies (dnsplan ctl config)")
	fs.UintVar(&maxVelocityRefusals, "max-velocity-refusals", fsm.DefaultMaxVelocityRefusals, "freeze on doubt a new cluster is founded with: how many times the velocity limit may refuse one endpoint within the velocity window before the cluster freezes itself (0: never); afterwards the cluster's value applies (dnsplan ctl config)")
	fs.Float64Var(&cfg.MaxReadBackFailures, "max-read-back-failures", fsm.DefaultMaxReadBackFailures, "freeze on doubt a new cluster is founded with: the largest fraction [0.5..1] of the members an enactor may report not serving an applied plan within its converge timeout before the cluster freezes itself (1: never); afterwards the cluster's value applies (dnsplan ctl config)")
	fs.DurationVar(&cfg.VelocityWindow, "velocity-window", fsm.DefaultVelocityWindow, "velocity window a new cluster is founded with; afterwards the cluster's value applies (dnsplan ctl config)")
	fs.Uint64Var(&cfg.SnapshotThreshold, "snapshot-threshold", 8192, "log entries since the last snapshot that trigger a new one")
	fs.DurationVar(&cfg.SnapshotInterval, "snapshot-interval", 30*time.Second, "how often the snapshot threshold is checked")
	fs.Uint64Var(&cfg.TrailingLogs, "trailing-logs", 10240, "log entries kept after a snapshot for slow followers")
	fs.DurationVar(&cfg.HeartbeatTimeout, "heartbeat-timeout", time.Second, "Raft heartbeat timeout")
	fs.DurationVar(&cfg.ElectionTimeout, "election-timeout", time.Second, "Raft election timeout")
	fs.BoolVar(&cfg.Legacy, "legacy", false, "found a cluster of the old, unsafe design: accept its apply and clean-up (for demonstration only); must match the cluster's design")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "text or json")
	fs.StringVar(&cfg.RaftLogLevel, "raft-log-level", "warn", "level of hashicorp/raft's own log")
	fs.Float64Var(&cfg.DNSRateLimit, "dns-rate-limit", dnsserver.DefaultRateLimit, "UDP answers a second per client prefix (/24, /56) before answers are truncated (TC) so clients retry over TCP")
	fs.IntVar(&cfg.DNSMaxTCPConns, "dns-max-tcp-conns", dnsserver.DefaultMaxTCPConns, "concurrent DNS TCP connections; more wait")
	fs.Float64Var(&cfg.WriteRate, "write-rate", cluster.DefaultWriteRate, "writes a second one client (its certificate's identity; its address with --insecure) may make through this node on average")
	fs.IntVar(&cfg.WriteBurst, "write-burst", cluster.DefaultWriteBurst, "writes one client may make through this node at once")
	tlsf := addTLSFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return cfg, err
	}
	if cfg.TLS, err = tlsf.nodeLoader(); err != nil {
		return cfg, err
	}
	if cfg.TLS != nil && cfg.TLS.Identity().Name != cfg.ID {
		// Peers authorize what a node does as itself (joining) by the
		// name in its certificate.
		return cfg, fmt.Errorf("node: --tls-cert names node %q, but --id is %q", cfg.TLS.Identity().Name, cfg.ID)
	}
	if cfg.ID == "" {
		return cfg, fmt.Errorf("node: --id is required")
	}
	if !(cfg.DNSRateLimit > 0) || cfg.DNSMaxTCPConns < 1 {
		return cfg, fmt.Errorf("node: --dns-rate-limit must be above 0 and --dns-max-tcp-conns at least 1")
	}
	if !(cfg.WriteRate > 0) || cfg.WriteBurst < 1 {
		return cfg, fmt.Errorf("node: --write-rate must be above 0 and --write-burst at least 1")
	}
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join(".", "data", cfg.ID)
	}
	// As given: 0 is a limit (no drop without force), not "unset".
	cfg.MaxCapacityDrop = &maxDrop
	if maxVelocityRefusals > fsm.MaxVelocityRefusalsLimit {
		return cfg, fmt.Errorf("node: --max-velocity-refusals %d above %d", maxVelocityRefusals, fsm.MaxVelocityRefusalsLimit)
	}
	cfg.MaxVelocityRefusals = proto.Uint32(uint32(maxVelocityRefusals))
	peers, err := parseInitialCluster(initialCluster)
	if err != nil {
		return cfg, err
	}
	cfg.InitialCluster = peers
	cfg.Zones, cfg.NSNames = zones.values, nsNames.values
	logger, err := newLogger(stderr, logLevel, logFormat)
	if err != nil {
		return cfg, err
	}
	cfg.Logger = logger
	cfg.RaftLogOutput = stderr
	return cfg, nil
}

// parseInitialCluster reads "id=raftaddr,id=raftaddr".
func parseInitialCluster(s string) ([]cluster.Peer, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var peers []cluster.Peer
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--initial-cluster: %q is not id=raftaddr", part)
		}
		peers = append(peers, cluster.Peer{ID: id, RaftAddr: addr})
	}
	return peers, nil
}

// newLogger is the process's slog logger; components add their own name.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %v", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", format)
}
