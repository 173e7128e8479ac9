package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/scenario"
)

// errNotAsExpected makes scenario exit non-zero when a design did not
// behave as it should (the legacy one failing as AWS's did, the fixed one
// not at all).
var errNotAsExpected = errors.New("a design did not behave as expected")

// runScenario runs a named scenario; aws-2025 is the only one.
func runScenario(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "aws-2025" {
		fmt.Fprintln(stderr, "usage: dnsplan scenario aws-2025 [--design legacy|fixed|both] [-o text|json] [--insecure]")
		if len(args) == 0 {
			return errors.New("scenario: name a scenario (aws-2025)")
		}
		return fmt.Errorf("scenario: unknown scenario %q (there is aws-2025)", args[0])
	}
	fs := newFlagSet("scenario aws-2025", stderr)
	design := fs.String("design", "both", "legacy, fixed or both (legacy, then fixed)")
	output := fs.String("o", "text", "text, or json: one JSON object per design, one per line")
	logLevel := fs.String("log-level", "", "log the nodes, enactors and checker to stderr at this level (debug, info, warn, error); default none")
	insecure := fs.Bool("insecure", false, "run the cluster and the actors in plaintext, unauthenticated, for comparison (default: mutual TLS, each actor with a certificate naming it)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	designs, err := contract.ParseDesigns(*design, contract.Legacy, contract.Fixed)
	if err != nil {
		return fmt.Errorf("scenario: --design: %w", err)
	}
	write := scenario.WriteText
	switch *output {
	case "text":
	case "json":
		write = scenario.WriteJSON
	default:
		return fmt.Errorf("scenario: -o %q is not text or json", *output)
	}
	logger := slog.New(slog.DiscardHandler)
	if *logLevel != "" {
		if logger, err = newLogger(stderr, *logLevel, "text"); err != nil {
			return err
		}
	}
	var failed []string
	for i, d := range designs {
		rep, err := scenario.Run(ctx, d, scenario.Options{Logger: logger, Insecure: *insecure})
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
