package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/enactor"
)

func runEnactor(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := newFlagSet("enactor", stderr)
	var (
		cfg       enactor.Config
		httpAddr  string
		logLevel  string
		logFormat string
	)
	hostname, _ := os.Hostname()
	clusterAddrs := newListFlag(defaultCluster...)
	fs.Var(clusterAddrs, "cluster", "comma-separated gRPC addresses of the cluster's nodes")
	fs.StringVar(&cfg.ID, "id", hostname, "enactor id, e.g. its availability zone (az-a); default the hostname")
	fs.DurationVar(&cfg.LeaseTTL, "lease-ttl", enactor.DefaultLeaseTTL, "TTL of the enactor/<shard> leases; renewed every third of it")
	fs.StringVar(&httpAddr, "http-addr", "127.0.0.1:8201", "/metrics and /healthz listen address; empty disables")
	fs.IntVar(&cfg.Shards, "shards", enactor.DefaultShards, "number of shards (leases) the endpoints are split over")
	fs.IntVar(&cfg.KeepLast, "keep-last", enactor.DefaultKeepLast, "clean-up keeps the newest N plans (and every applied one)")
	fs.DurationVar(&cfg.ConvergeTimeout, "converge-timeout", enactor.DefaultConvergeTimeout, "how long to read nodes back after an apply before warning")
	waves := fs.String("waves", "", "staged rollout: apply each plan wave by wave over the endpoints it changes, as cumulative counts and percentages ending in 100% (e.g. 1,10%,100%); each wave but the last is read back on every node and baked before the next, and a wave whose read-back fails or whose new targets a newer plan marks unhealthy stops the rollout and freezes the cluster (default: every endpoint at once)")
	fs.DurationVar(&cfg.Bake, "bake", 0, "with --waves: how long to wait after a wave was read back before checking it and going on")
	fs.BoolVar(&cfg.Legacy, "legacy", false, "LEGACY: run the old, unsafe enactor (no lease, one-time check, unconditional writes, age-based clean-up) against a --legacy cluster; a demonstration of the AWS failure, never for real use")
	fs.DurationVar(&cfg.LegacyDelay, "legacy-delay", 0, "with --legacy: pause between two endpoint writes of a pass")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "text or json")
	tlsf := addTLSFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if cfg.ID == "" {
		return errors.New("enactor: --id is required (no hostname to default to)")
	}
	// Zero means "default" in enactor.Config; on the command line it is a
	// mistake.
	switch {
	case cfg.LeaseTTL <= 0:
		return fmt.Errorf("enactor: --lease-ttl %s must be positive", cfg.LeaseTTL)
	case cfg.Shards < 1:
		return fmt.Errorf("enactor: --shards %d must be at least 1", cfg.Shards)
	case cfg.KeepLast < 1:
		return fmt.Errorf("enactor: --keep-last %d must be at least 1", cfg.KeepLast)
	case cfg.ConvergeTimeout <= 0:
		return fmt.Errorf("enactor: --converge-timeout %s must be positive", cfg.ConvergeTimeout)
	case cfg.Bake < 0:
		return fmt.Errorf("enactor: --bake %s is negative", cfg.Bake)
	case cfg.Bake > 0 && *waves == "":
		return errors.New("enactor: --bake needs --waves")
	}
	parsed, err := enactor.ParseWaves(*waves)
	if err != nil {
		return fmt.Errorf("enactor: --waves: %w", err)
	}
	cfg.Waves = parsed
	logger, err := newLogger(stderr, logLevel, logFormat)
	if err != nil {
		return err
	}
	tlsOpts, _, err := tlsf.clientOptions()
	if err != nil {
		return fmt.Errorf("enactor: %w", err)
	}
	cl, err := client.New(clusterAddrs.values, append(tlsOpts, client.WithLogger(logger))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	reg := newRegistry()
	cfg.Client, cfg.Logger, cfg.Registerer = cl, logger, reg
	e, err := enactor.New(cfg)
	if err != nil {
		return err
	}
	// The HTTP endpoint serves until the enactor stops.
	stop, err := serveHTTP(httpAddr, e.Handler(reg), logger.With("component", "enactor"))
	if err != nil {
		return fmt.Errorf("enactor: --http-addr: %w", err)
	}
	defer stop()
	logger.Info("enactor starting", "component", "enactor", "id", cfg.ID, "cluster", clusterAddrs.String(), "http", httpAddr)
	return e.Run(ctx)
}
