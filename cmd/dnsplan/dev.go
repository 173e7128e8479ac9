package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/backend"
	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/cluster/local"
	"github.com/dnsplan/dnsplan/enactor"
	"github.com/dnsplan/dnsplan/planner"
)

// devInventory is the planner's sample inventory in dev: the four sample
// backends dev starts, behind three endpoints (like AWS's regional, FIPS
// and IPv6 endpoints). Addresses are documentation addresses, served in
// DNS; the checks reach the backends on loopback.
const devInventory = `zone: dnsplan.test.
endpoints:
  - name: api.dnsplan.test.
    ttl: 30
    targets:
      - {id: lb-1, address: 192.0.2.11, capacity: 100, check: "http://127.0.0.1:8081/healthz"}
      - {id: lb-2, address: 192.0.2.12, capacity: 100, check: "http://127.0.0.1:8082/healthz"}
      - {id: lb-3, address: 192.0.2.13, capacity: 100, check: "http://127.0.0.1:8083/healthz"}
      - {id: lb-4, address: 192.0.2.14, capacity: 100, check: "http://127.0.0.1:8084/healthz"}
  - name: api-fips.dnsplan.test.
    ttl: 30
    targets:
      - {id: lb-1, address: 192.0.2.11, capacity: 100, check: "http://127.0.0.1:8081/healthz"}
      - {id: lb-2, address: 192.0.2.12, capacity: 100, check: "http://127.0.0.1:8082/healthz"}
  - name: api-v6.dnsplan.test.
    ttl: 30
    targets:
      - {id: lb-3, address: "2001:db8::13", capacity: 100, check: "http://127.0.0.1:8083/healthz"}
      - {id: lb-4, address: "2001:db8::14", capacity: 100, check: "http://127.0.0.1:8084/healthz"}
`

// devReadyTimeout bounds how long dev waits for its cluster to elect a
// leader with Raft's default timeouts.
const devReadyTimeout = 30 * time.Second

// runDev runs the whole system in one process: three nodes, four sample
// backends, a planner and three enactors, on the contract's local ports.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dev", stderr)
	dataDir := fs.String("data-dir", "", "where the nodes keep their state (default: a temporary directory removed on exit)")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	logger, err := newLogger(stderr, *logLevel, "text")
	if err != nil {
		return err
	}
	if *dataDir == "" {
		dir, err := os.MkdirTemp("", "dnsplan-dev-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		*dataDir = dir
	}
	inv, err := planner.ParseInventory([]byte(devInventory))
	if err != nil {
		return fmt.Errorf("dev: built-in inventory: %w", err)
	}

	var stops []func() // run in reverse on the way out
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()

	for i := 1; i <= 4; i++ {
		b := backend.New(fmt.Sprintf("backend%d", i))
		stop, err := serveHTTP(fmt.Sprintf("127.0.0.1:%d", 8080+i), b.Handler(), logger)
		if err != nil {
			return fmt.Errorf("dev: backend%d: %w", i, err)
		}
		stops = append(stops, stop)
	}

	// The nodes on the contract's local ports, founded together, on
	// mutual TLS with a CA of dev's own (kept with a kept --data-dir).
	certDir := filepath.Join(*dataDir, "certs")
	nodes, err := local.Start(ctx, local.Options{
		Dir:     *dataDir,
		TLS:     true,
		CertDir: certDir,
		Addrs: func(i int) local.Addrs {
			return local.Addrs{
				ID:   fmt.Sprintf("node%d", i+1),
				Raft: fmt.Sprintf("127.0.0.1:%d", 7001+i),
				GRPC: fmt.Sprintf("127.0.0.1:%d", 9001+i),
				DNS:  fmt.Sprintf("127.0.0.1:%d", 5301+i),
				HTTP: fmt.Sprintf("127.0.0.1:%d", 8001+i),
			}
		},
		Logger: logger,
		Configure: func(_ int, cfg *cluster.Config) {
			cfg.RaftLogOutput, cfg.RaftLogLevel = stderr, "error"
		},
	}, devReadyTimeout)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	stops = append(stops, nodes.Close)
	grpcAddrs := nodes.GRPCAddrs()

	// Planner and enactors run until ctx ends; each is a goroutine that
	// the deferred stops wait for.
	roles, cancelRoles := context.WithCancel(ctx)
	var running sync.WaitGroup
	stops = append(stops, func() { cancelRoles(); running.Wait() })
	run := func(name, httpAddr string, h func(prometheus.Gatherer) http.Handler, reg *prometheus.Registry, runFn func(context.Context) error) error {
		stop, err := serveHTTP(httpAddr, h(reg), logger)
		if err != nil {
			return fmt.Errorf("dev: %s: %w", name, err)
		}
		running.Add(1)
		go func() {
			defer running.Done()
			defer stop()
			if err := runFn(roles); err != nil {
				logger.Error("stopped", "component", name, "err", err)
			}
		}()
		return nil
	}
	// Each process dials with a certificate of its own, named by the id
	// it acts as.
	newClient := func(id auth.Identity) (*client.Client, error) {
		cfg, err := nodes.ClientTLS(id)
		if err != nil {
			return nil, fmt.Errorf("dev: %w", err)
		}
		c, err := client.New(grpcAddrs, client.WithLogger(logger), client.WithTLS(cfg))
		if err == nil {
			stops = append(stops, func() { c.Close() })
		}
		return c, err
	}

	pc, err := newClient(auth.Identity{Role: auth.RolePlanner, Name: "planner1"})
	if err != nil {
		return err
	}
	preg := newRegistry()
	p, err := planner.New(planner.Config{ID: "planner1", Client: pc, Inventory: inv, Logger: logger, Registerer: preg})
	if err != nil {
		return err
	}
	if err := run("planner1", "127.0.0.1:8101", p.Handler, preg, p.Run); err != nil {
		return err
	}
	for i, id := range []string{"az-a", "az-b", "az-c"} {
		ec, err := newClient(auth.Identity{Role: auth.RoleEnactor, Name: id})
		if err != nil {
			return err
		}
		ereg := newRegistry()
		e, err := enactor.New(enactor.Config{ID: id, Client: ec, Logger: logger, Registerer: ereg})
		if err != nil {
			return err
		}
		if err := run("enactor "+id, fmt.Sprintf("127.0.0.1:%d", 8201+i), e.Handler, ereg, e.Run); err != nil {
			return err
		}
	}

	// The user's certificate, for ctl and grpcurl.
	if _, err := nodes.Certificate(auth.Identity{Role: auth.RoleOperator, Name: "operator"}); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	printDev(stdout, *dataDir, certDir)
	<-ctx.Done()
	fmt.Fprintln(stdout, "\nstopping dnsplan dev")
	return nil
}

func printDev(w io.Writer, dataDir, certDir string) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "dnsplan dev is running (Ctrl-C stops it):")
	fmt.Fprintln(tw, "")
	fmt.Fprintln(tw, "  what\tgRPC\tDNS\tHTTP (/metrics, /healthz)")
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(tw, "  node%d\t127.0.0.1:%d\t127.0.0.1:%d\t127.0.0.1:%d\n", i, 9000+i, 5300+i, 8000+i)
	}
	fmt.Fprintln(tw, "  planner1\t\t\t127.0.0.1:8101")
	for i, id := range []string{"az-a", "az-b", "az-c"} {
		fmt.Fprintf(tw, "  enactor %s\t\t\t127.0.0.1:%d\n", id, 8201+i)
	}
	for i := 1; i <= 4; i++ {
		fmt.Fprintf(tw, "  backend%d\t\t\t127.0.0.1:%d (POST /fail, /recover)\n", i, 8080+i)
	}
	tw.Flush()
	ca, cert, key := filepath.Join(certDir, auth.CACertFile), auth.CertFile(certDir, "operator"), auth.KeyFile(certDir, "operator")
	fmt.Fprintf(w, "\n  state: %s\n  links: mutual TLS; the CA and every certificate are in %s\n\ntry:\n", dataDir, certDir)
	for _, c := range []string{
		fmt.Sprintf("export DNSPLAN_TLS_CA=%s DNSPLAN_TLS_CERT=%s DNSPLAN_TLS_KEY=%s", ca, cert, key),
		"dig @127.0.0.1 -p 5301 api.dnsplan.test A",
		"dig @127.0.0.1 -p 5302 _dnsplan.api.dnsplan.test TXT",
		"go run ./cmd/dnsplan ctl status",
		"go run ./cmd/dnsplan ctl applied",
		fmt.Sprintf("grpcurl -cacert %s -cert %s -key %s 127.0.0.1:9001 dnsplan.v1.ClusterService/Status", ca, cert, key),
		"curl -X POST 127.0.0.1:8081/fail      # lb-1 leaves DNS after two failed checks",
		"go run ./cmd/dnsplan ctl history --limit 10",
		"curl -X POST 127.0.0.1:8081/recover",
	} {
		fmt.Fprintln(w, "  "+strings.TrimSpace(c))
	}
}
