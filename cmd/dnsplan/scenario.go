package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/scenario"
)

// errNotAsExpected makes scenario exit non-zero when a run did not behave
// as it should (aws-2025: the legacy design failing as AWS's did, the
// fixed one not at all; broken-planner: the fixed design freezing, DNS
// keeping the old records, rollback and unfreeze restoring service).
var errNotAsExpected = errors.New("a design did not behave as expected")

const scenarioUsage = `usage: dnsplan scenario aws-2025 [--design legacy|fixed|both] [-o text|json] [--insecure]
       dnsplan scenario broken-planner [-o text|json] [--insecure]`

// runScenario runs a named scenario: aws-2025 (the default story) or
// broken-planner, which runs on the fixed design only and has no --design.
func runScenario(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != scenario.AWS2025 && args[0] != scenario.BrokenPlanner) {
		fmt.Fprintln(stderr, scenarioUsage)
		if len(args) == 0 {
			return fmt.Errorf("scenario: name a scenario (%s or %s)", scenario.AWS2025, scenario.BrokenPlanner)
		}
		return fmt.Errorf("scenario: unknown scenario %q (there are %s and %s)", args[0], scenario.AWS2025, scenario.BrokenPlanner)
	}
	name := args[0]
	fs := newFlagSet("scenario "+name, stderr)
	design := new(string)
	if name == scenario.AWS2025 {
		design = fs.String("design", "both", "legacy, fixed or both (legacy, then fixed)")
	}
	output := fs.String("o", "text", "text, or json: one JSON object per run, one per line")
	logLevel := fs.String("log-level", "", "log the nodes, enactors and checker to stderr at this level (debug, info, warn, error); default none")
	insecure := fs.Bool("insecure", false, "run the cluster and the actors in plaintext, unauthenticated, for comparison (default: mutual TLS, each actor with a certificate naming it)")
	store := fs.String("store", "raft", "the log the cluster runs on: raft, or etcd (needs --etcd-endpoints)")
	etcdEndpoints := fs.String("etcd-endpoints", "", "with --store etcd: client URLs of the etcd members, comma-separated (plaintext); each run keeps its log under a prefix of its own")
	etcdPrefix := fs.String("etcd-prefix", "/dnsplan-scenario/", "with --store etcd: the key prefix the runs' logs go under")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	st, err := cluster.ParseStore(*store)
	if err != nil {
		return fmt.Errorf("scenario: --store: %w", err)
	}
	var etcd cluster.EtcdConfig
	switch {
	case st == cluster.StoreEtcd && *etcdEndpoints == "":
		return errors.New("scenario: --store etcd needs --etcd-endpoints URL,...")
	case st == cluster.StoreRaft && *etcdEndpoints != "":
		return errors.New("scenario: --etcd-endpoints is for --store etcd")
	case st == cluster.StoreEtcd:
		etcd = cluster.EtcdConfig{Endpoints: strings.Split(*etcdEndpoints, ","), Prefix: *etcdPrefix}
	}
	if *output != "text" && *output != "json" {
		return fmt.Errorf("scenario: -o %q is not text or json", *output)
	}
	logger := slog.New(slog.DiscardHandler)
	if *logLevel != "" {
		var err error
		if logger, err = newLogger(stderr, *logLevel, "text"); err != nil {
			return err
		}
	}
	opts := scenario.Options{Logger: logger, Insecure: *insecure, Store: st, Etcd: etcd}
	if name == scenario.BrokenPlanner {
		rep, err := scenario.RunBrokenPlanner(ctx, opts)
		if err != nil {
			return err
		}
		write := scenario.WriteBrokenPlannerText
		if *output == "json" {
			write = scenario.WriteBrokenPlannerJSON
		}
		if err := write(stdout, rep); err != nil {
			return err
		}
		if !rep.AsExpected {
			return fmt.Errorf("%w: [%s]", errNotAsExpected, rep.Design)
		}
		return nil
	}

	designs, err := contract.ParseDesigns(*design, contract.Legacy, contract.Fixed)
	if err != nil {
		return fmt.Errorf("scenario: --design: %w", err)
	}
	write := scenario.WriteText
	if *output == "json" {
		write = scenario.WriteJSON
	}
	var failed []string
	for i, d := range designs {
		rep, err := scenario.Run(ctx, d, opts)
		if err != nil {
			return err
		}
		if i > 0 && *output == "text" {
			fmt.Fprintln(stdout)
		}
		if err := write(stdout, rep); err != nil {
			return err
		}
		if !rep.AsExpected {
			failed = append(failed, string(d))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: %v", errNotAsExpected, failed)
	}
	return nil
}
