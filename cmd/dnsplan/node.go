package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/cluster/dnsserver"
	"github.com/dnsplan/dnsplan/cluster/etcdlog"
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
	logger.Info("node started", "id", cfg.ID, "store", cfg.Store, "raft", n.RaftAddr(), "grpc", n.AdvertiseGRPC(), "dns", n.DNSAddr(), "http", n.HTTPAddr(), "data_dir", cfg.DataDir)
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
	etcdf := addEtcdFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return cfg, err
	}
	if cfg.TLS, err = tlsf.nodeLoader(); err != nil {
		return cfg, err
	}
	if cfg.Store, cfg.Etcd, err = etcdf.config(tlsf.insecure); err != nil {
		return cfg, err
	}
	if cfg.Store == cluster.StoreEtcd && (initialCluster != "" || cfg.Join != "") {
		return cfg, errors.New("node: --initial-cluster and --join are for --store raft; nodes on etcd join by starting on the same --etcd-endpoints and --etcd-prefix")
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
	if cfg.Store == cluster.StoreEtcd && cfg.Etcd.TLS == nil {
		logger.Warn("INSECURE: --store etcd without --etcd-ca: the log travels to etcd in plaintext, and whoever can write under --etcd-prefix changes what every node applies")
	}
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

// etcdFlags are the node's store flags: which log it runs on and, for
// etcd, how it reaches etcd.
type etcdFlags struct {
	store, endpoints, prefix string
	ca, cert, key            string
	username, password       string
}

func addEtcdFlags(fs *flag.FlagSet) *etcdFlags {
	e := addEtcdConnFlags(fs, " (--store etcd)")
	fs.StringVar(&e.store, "store", string(cluster.StoreRaft), "the log under the state machine: raft (the nodes' own Raft log) or etcd (a log kept in etcd, --etcd-*)")
	return e
}

// addEtcdConnFlags are the flags that say how to reach etcd and where the
// log lives there; note ends each flag's help.
func addEtcdConnFlags(fs *flag.FlagSet, note string) *etcdFlags {
	e := &etcdFlags{}
	fs.StringVar(&e.endpoints, "etcd-endpoints", "", "client URLs of the etcd members, comma-separated (required)"+note)
	fs.StringVar(&e.prefix, "etcd-prefix", etcdlog.DefaultPrefix, "key prefix of the log in etcd; nodes on one prefix are one cluster"+note)
	fs.StringVar(&e.ca, "etcd-ca", "", "CA bundle (PEM) that etcd's certificates are checked against; turns on TLS to etcd"+note)
	fs.StringVar(&e.cert, "etcd-cert", "", "client certificate (PEM) presented to etcd, with --etcd-key; etcd takes its common name as the user"+note)
	fs.StringVar(&e.key, "etcd-key", "", "private key of --etcd-cert"+note)
	fs.StringVar(&e.username, "etcd-username", "", "etcd user to authenticate as, with --etcd-password"+note)
	fs.StringVar(&e.password, "etcd-password", "", "password of --etcd-username (DNSPLAN_ETCD_PASSWORD keeps it off the command line)"+note)
	return e
}

// config checks the store flags together and returns the store and its
// etcd configuration. On raft no --etcd-* flag may be given; on etcd the
// endpoints are required, certificate and key go together, as do user and
// password, and a node that runs its own API with TLS (not --insecure)
// must reach etcd over TLS and authenticate to it (cluster/DESIGN.md, "Who
// may write the log").
func (e *etcdFlags) config(insecure bool) (cluster.Store, cluster.EtcdConfig, error) {
	var cfg cluster.EtcdConfig
	store, err := cluster.ParseStore(e.store)
	if err != nil {
		return "", cfg, fmt.Errorf("node: --store %q: raft or etcd", e.store)
	}
	given := e.endpoints != "" || e.prefix != etcdlog.DefaultPrefix || e.ca != "" || e.cert != "" || e.key != "" || e.username != "" || e.password != ""
	if store == cluster.StoreRaft {
		if given {
			return "", cfg, errors.New("node: the --etcd-* flags need --store etcd")
		}
		return store, cfg, nil
	}
	if cfg, err = e.connection(); err != nil {
		return "", cfg, fmt.Errorf("node: %w", err)
	}
	if !insecure && (e.ca == "" || (e.cert == "" && e.username == "")) {
		return "", cfg, errors.New("node: --store etcd with TLS on the API needs TLS to etcd and an etcd identity: --etcd-ca and either --etcd-cert/--etcd-key or --etcd-username/--etcd-password (or --insecure for plaintext everywhere)")
	}
	return store, cfg, nil
}

// connection checks the flags that say how to reach etcd and returns them
// as the store's configuration: the endpoints are required, certificate
// and key go together, as do user and password, and a certificate needs
// TLS (--etcd-ca).
func (e *etcdFlags) connection() (cluster.EtcdConfig, error) {
	var cfg cluster.EtcdConfig
	for _, ep := range strings.Split(e.endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			cfg.Endpoints = append(cfg.Endpoints, ep)
		}
	}
	switch {
	case len(cfg.Endpoints) == 0:
		return cfg, errors.New("reaching etcd needs --etcd-endpoints URL,...")
	case !strings.HasPrefix(e.prefix, "/") || !strings.HasSuffix(e.prefix, "/"):
		return cfg, fmt.Errorf("--etcd-prefix %q must start and end with /", e.prefix)
	case (e.cert == "") != (e.key == ""):
		return cfg, errors.New("--etcd-cert and --etcd-key go together")
	case e.cert != "" && e.ca == "":
		return cfg, errors.New("--etcd-cert needs --etcd-ca (TLS to etcd)")
	case (e.username == "") != (e.password == ""):
		return cfg, errors.New("--etcd-username and --etcd-password go together")
	}
	cfg.Prefix, cfg.Username, cfg.Password = e.prefix, e.username, e.password
	if e.ca != "" {
		pem, err := os.ReadFile(e.ca)
		if err != nil {
			return cfg, fmt.Errorf("--etcd-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return cfg, fmt.Errorf("--etcd-ca %s holds no PEM certificate", e.ca)
		}
		cfg.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if e.cert != "" {
			pair, err := tls.LoadX509KeyPair(e.cert, e.key)
			if err != nil {
				return cfg, fmt.Errorf("--etcd-cert/--etcd-key: %w", err)
			}
			cfg.TLS.Certificates = []tls.Certificate{pair}
		}
	}
	return cfg, nil
}
