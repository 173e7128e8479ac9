package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/planner"
)

func runPlanner(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := newFlagSet("planner", stderr)
	var (
		cfg       planner.Config
		httpAddr  string
		logLevel  string
		logFormat string
	)
	hostname, _ := os.Hostname()
	clusterAddrs := newListFlag(defaultCluster...)
	fs.Var(clusterAddrs, "cluster", "comma-separated gRPC addresses of the cluster's nodes")
	fs.StringVar(&cfg.ID, "id", hostname, "planner id, named in the planner lease and in plans; default the hostname")
	fs.StringVar(&cfg.InventoryPath, "inventory", "", "inventory file (YAML; required); reloaded on change and on SIGHUP")
	fs.DurationVar(&cfg.Interval, "interval", planner.DefaultInterval, "how often targets are probed and the plan reconsidered")
	fs.StringVar(&httpAddr, "http-addr", "127.0.0.1:8101", "/metrics and /healthz listen address; empty disables")
	fs.DurationVar(&cfg.ProbeTimeout, "probe-timeout", planner.DefaultProbeTimeout, "timeout of one health check")
	fs.IntVar(&cfg.Rise, "rise", planner.DefaultRise, "consecutive successful probes that make an unhealthy target healthy")
	fs.IntVar(&cfg.Fall, "fall", planner.DefaultFall, "consecutive failed probes that make a healthy target unhealthy")
	fs.DurationVar(&cfg.LeaseTTL, "lease-ttl", planner.DefaultLeaseTTL, "TTL of the planner lease; renewed every third of it")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "text or json")
	tlsf := addTLSFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if cfg.InventoryPath == "" {
		return errors.New("planner: --inventory is required")
	}
	if cfg.ID == "" {
		return errors.New("planner: --id is required (no hostname to default to)")
	}
	// Flags set to zero would silently take the defaults in Config; a
	// user who wrote --rise 0 meant something else.
	switch {
	case cfg.Interval <= 0:
		return fmt.Errorf("planner: --interval %s must be positive", cfg.Interval)
	case cfg.ProbeTimeout <= 0:
		return fmt.Errorf("planner: --probe-timeout %s must be positive", cfg.ProbeTimeout)
	case cfg.Rise < 1 || cfg.Fall < 1:
		return errors.New("planner: --rise and --fall must be at least 1")
	case cfg.LeaseTTL <= 0:
		return fmt.Errorf("planner: --lease-ttl %s must be positive", cfg.LeaseTTL)
	}
	logger, err := newLogger(stderr, logLevel, logFormat)
	if err != nil {
		return err
	}
	tlsOpts, _, err := tlsf.clientOptions()
	if err != nil {
		return fmt.Errorf("planner: %w", err)
	}
	cl, err := client.New(clusterAddrs.values, append(tlsOpts, client.WithLogger(logger))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	reg := newRegistry()
	cfg.Client, cfg.Logger, cfg.Registerer = cl, logger, reg
	p, err := planner.New(cfg)
	if err != nil {
		return err
	}
	// The HTTP endpoint serves until the planner stops.
	stop, err := serveHTTP(httpAddr, p.Handler(reg), logger.With("component", "planner"))
	if err != nil {
		return fmt.Errorf("planner: --http-addr: %w", err)
	}
	defer stop()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// SIGHUP reloads the inventory now rather than at the next poll; the
	// planner logs and counts a refused one itself.
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = p.Reload()
			}
		}
	}()

	logger.Info("planner starting", "component", "planner", "id", cfg.ID, "cluster", clusterAddrs.String(),
		"inventory", cfg.InventoryPath, "http", httpAddr)
	return p.Run(ctx)
}
