package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dnsplan/dnsplan/chaos"
	"github.com/dnsplan/dnsplan/contract"
)

// Why chaos exits non-zero: a single run found a violation, or a series
// did not come out as the designs should (the fixed design clean in every
// seed, the legacy one caught in at least 90%).
var (
	errViolation        = errors.New("chaos: invariant violated")
	errSeriesUnexpected = errors.New("chaos: the designs did not behave as expected")
)

// faultKinds lists the fault kinds for --faults' help.
func faultKinds() string {
	kinds := make([]string, len(chaos.FaultKinds))
	for i, k := range chaos.FaultKinds {
		kinds[i] = string(k)
	}
	return strings.Join(kinds, ", ")
}

// runChaos runs seeded fault runs against an in-process cluster of the
// chosen design and checks I1–I5, I7, D1, L2 and L3 on what they recorded.
func runChaos(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("chaos", stderr)
	design := fs.String("design", "fixed", "fixed, legacy, or both (fixed, then legacy)")
	seed := fs.Uint64("seed", 1, "the seed of the (first) run: every fault, its timing and target, and every health change is drawn from it")
	runs := fs.Int("runs", 1, "how many runs per design, with seeds seed, seed+1, …; more than one prints a table")
	duration := fs.Duration("duration", chaos.DefaultDuration, "how long each run injects faults and observes")
	faults := fs.String("faults", "all", "the fault kinds to draw from, comma-separated: "+faultKinds())
	out := fs.String("out", filepath.Join(os.TempDir(), "dnsplan-chaos"), "where a run with a violation writes its history (JSON) and porcupine's visualization (HTML)")
	keepGoing := fs.Bool("keep-going", false, "run the whole duration after a violation (default: stop a second after the first)")
	verbose := fs.Bool("v", false, "with several runs, print each violation's history too (always printed for a single run)")
	logLevel := fs.String("log-level", "", "log the nodes, planner, enactors and checker to stderr at this level (debug, info, warn, error); default none")
	insecure := fs.Bool("insecure", false, "run the cluster and every client in plaintext, unauthenticated, for comparison (default: mutual TLS, each actor with a certificate of its role and name)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	designs, err := contract.ParseDesigns(*design)
	if err != nil {
		return fmt.Errorf("chaos: --design: %w", err)
	}
	mix, err := chaos.ParseFaults(*faults)
	if err != nil {
		return err
	}
	if *runs < 1 {
		return fmt.Errorf("chaos: --runs %d must be at least 1", *runs)
	}
	logger := slog.New(slog.DiscardHandler)
	if *logLevel != "" {
		if logger, err = newLogger(stderr, *logLevel, "text"); err != nil {
			return err
		}
	}

	// One run of one design exits non-zero on a violation; a series
	// exits non-zero unless each design came out as it should.
	single := *runs == 1 && len(designs) == 1
	var tally chaos.Tally
	caught := 0
	for _, d := range designs {
		for i := range *runs {
			start := time.Now()
			rep, err := chaos.Run(ctx, chaos.Config{
				Design: d, Seed: *seed + uint64(i), Duration: *duration, Faults: mix,
				KeepGoing: *keepGoing, Out: *out, Logger: logger, Insecure: *insecure,
			})
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, chaos.ErrConfig) {
				return err
			}
			tally.Add(d, rep, err)
			switch {
			case err != nil:
				fmt.Fprintf(stdout, "%s seed %d: ERROR %v\n", d, *seed+uint64(i), err)
				continue
			case single || *verbose:
				rep.Print(stdout)
			default:
				fmt.Fprintln(stdout, rep.Summary())
			}
			if rep.Caught() {
				caught++
			}
			if !single {
				fmt.Fprintf(stdout, "  (%s)\n", time.Since(start).Round(100*time.Millisecond))
			}
		}
	}
	if single {
		if tally.Errors(designs[0]) > 0 {
			return errors.New("chaos: the run could not be completed")
		}
		if caught > 0 {
			return errViolation
		}
		return nil
	}
	fmt.Fprintln(stdout)
	tally.Print(stdout)
	var problems []string
	for _, d := range designs {
		c, n := tally.Caught(d)
		if e := tally.Errors(d); e > 0 {
			problems = append(problems, fmt.Sprintf("%d %s runs could not be completed", e, d))
		}
		switch {
		case d == contract.Fixed && c > 0:
			problems = append(problems, fmt.Sprintf("the fixed design violated an invariant in %d of %d seeds", c, n))
		case d == contract.Legacy && c*10 < n*9:
			problems = append(problems, fmt.Sprintf("the legacy design was caught in only %d of %d seeds (want 90%%)", c, n))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %v", errSeriesUnexpected, problems)
	}
	return nil
}
