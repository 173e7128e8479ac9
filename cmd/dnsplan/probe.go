package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/probe"
)

// errViolations makes probe exit non-zero when it saw an invariant broken.
var errViolations = errors.New("invariant violations observed")

func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("probe", stderr)
	cluster := newListFlag(defaultCluster...)
	fs.Var(cluster, "cluster", "gRPC addresses of the nodes (comma-separated); empty skips the gRPC checks")
	dnsAddrs := newListFlag("127.0.0.1:5301", "127.0.0.1:5302", "127.0.0.1:5303")
	fs.Var(dnsAddrs, "dns", "DNS addresses of the nodes (comma-separated)")
	endpoints := newListFlag()
	fs.Var(endpoints, "endpoint", "endpoint to probe, repeatable (default: every applied endpoint, discovered)")
	interval := fs.Duration("interval", 100*time.Millisecond, "time between rounds")
	timeout := fs.Duration("timeout", 500*time.Millisecond, "timeout of one query")
	duration := fs.Duration("duration", time.Hour, "stop after this long (the probe also stops on SIGINT/SIGTERM)")
	httpAddr := fs.String("http-addr", "127.0.0.1:8301", "serves /summary (JSON) and /healthz; empty disables")
	output := fs.String("o", "text", "summary format on exit: text or json")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	tlsf := addTLSFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *output != "text" && *output != "json" {
		return fmt.Errorf("probe: -o %q is not text or json", *output)
	}
	if *duration <= 0 {
		return errors.New("probe: --duration must be positive")
	}
	logger, err := newLogger(stderr, *logLevel, "text")
	if err != nil {
		return err
	}
	cfg := probe.Config{Endpoints: endpoints.values, Interval: *interval, Timeout: *timeout, Logger: logger}
	for _, addr := range dnsAddrs.values {
		cfg.Nodes = append(cfg.Nodes, probe.Node{Name: addr, DNS: addr})
	}
	if len(cluster.values) > 0 {
		tlsOpts, _, err := tlsf.clientOptions()
		if err != nil {
			return fmt.Errorf("probe: %w", err)
		}
		c, err := client.New(cluster.values, append(tlsOpts, client.WithLogger(logger), client.WithCallTimeout(*timeout*4))...)
		if err != nil {
			return err
		}
		defer c.Close()
		cfg.Cluster = c
	}
	p, err := probe.New(cfg)
	if err != nil {
		return err
	}
	stop, err := serveHTTP(*httpAddr, probeHandler(p), logger.With("component", "probe"))
	if err != nil {
		return fmt.Errorf("probe: --http-addr: %w", err)
	}
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		return err
	}
	s := p.Summary()
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s); err != nil {
			return err
		}
	} else {
		writeProbeSummary(stdout, s)
	}
	if len(s.Violations) > 0 {
		return errViolations
	}
	return nil
}

func probeHandler(p *probe.Prober) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /summary", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(p.Summary())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return mux
}

func writeProbeSummary(w io.Writer, s probe.Summary) {
	fmt.Fprintf(w, "probe: %d rounds, %d queries in %s over %d endpoints\n", s.Rounds, s.Queries, s.Elapsed.Round(time.Millisecond), len(s.Endpoints))
	fmt.Fprintf(w, "violations: I1 %d, I2 %d\n", s.Count("I1"), s.Count("I2"))
	for _, v := range s.Violations {
		fmt.Fprintf(w, "  %s %s %s %s: %s (%s)\n", v.Invariant, v.Node, v.Source, v.Endpoint, v.Detail, v.At.Format(time.RFC3339Nano))
	}
	if len(s.Unavailable) == 0 {
		fmt.Fprintln(w, "unavailable: never")
		return
	}
	fmt.Fprintln(w, "unavailable:")
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	now := time.Now()
	for _, u := range s.Unavailable {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", u.Node, u.Source, u.From.Format("15:04:05.000"), u.Duration(now).Round(time.Millisecond), strings.TrimSpace(u.Error))
	}
	tw.Flush()
}
