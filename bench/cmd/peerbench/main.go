// Command peerbench measures dnsplan beside its peers in one run: the
// fenced conditional apply and failover against etcd, the DNS server
// against Knot, NSD and BIND9, and how fast an applied plan reaches every
// node's DNS. Every server is a real process on loopback, pinned with
// taskset, started and stopped by peerbench itself; every load is bounded
// in count and in time. It prints the figures beside their peers' and,
// with --out, writes them into BENCHMARKS.md. `make bench` and `make
// bench-quick` run it; bench/README.md is a pointer to BENCHMARKS.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// config is what one run measures and how long.
type config struct {
	quick      bool
	figures    []string
	bin        string
	etcds      []string // label=path of each etcd to compare
	portBase   int
	dir        string
	out        string
	clients    []int
	applyFor   time.Duration
	trials     int
	dnsFor     time.Duration
	propTrials int
	serverCPUs string // the apply and failover clusters' cores
	dnsServer  string // the DNS figure's server core
	dnsLoad    string // dnsperf's core
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "peerbench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("peerbench", flag.ContinueOnError)
	var cfg config
	var figures, etcds string
	fs.BoolVar(&cfg.quick, "quick", false, "fewer trials and shorter runs (make bench-quick: under 4 minutes)")
	fs.StringVar(&figures, "figures", "apply,failover,propagation,dns", "figures to measure, comma-separated")
	fs.StringVar(&cfg.bin, "bin", "bin/dnsplan", "the dnsplan binary")
	fs.StringVar(&etcds, "etcd", "etcd 3.7.3=.tools/bin/etcd,etcd 3.4 (Debian)=/usr/bin/etcd", "the etcd peers, label=path, comma-separated; a missing path is skipped")
	fs.IntVar(&cfg.portBase, "port-base", 27000, "first of the 500 loopback ports the run uses")
	fs.StringVar(&cfg.dir, "dir", "", "where data and logs go (default a new temporary directory, removed afterwards)")
	fs.StringVar(&cfg.out, "out", "", "write the report to this file (e.g. BENCHMARKS.md)")
	fs.StringVar(&cfg.serverCPUs, "cpus", "0,1", "cores of the apply and failover clusters (both systems alike)")
	fs.StringVar(&cfg.dnsServer, "dns-server-cpu", "1", "core of the DNS server under test")
	fs.StringVar(&cfg.dnsLoad, "dns-load-cpu", "0", "core of dnsperf")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	cfg.figures = strings.Split(figures, ",")
	for _, f := range cfg.figures {
		if !slices.Contains([]string{"apply", "failover", "propagation", "dns"}, f) {
			return fmt.Errorf("unknown figure %q: apply, failover, propagation or dns", f)
		}
	}
	for _, e := range strings.Split(etcds, ",") {
		if label, path, ok := strings.Cut(e, "="); ok {
			if _, err := os.Stat(path); err == nil {
				cfg.etcds = append(cfg.etcds, label+"="+path)
			} else {
				fmt.Printf("skipping %s: %s not found\n", label, path)
			}
		}
	}
	cfg.clients = []int{1, 16, 256}
	cfg.applyFor, cfg.trials, cfg.dnsFor, cfg.propTrials = 15*time.Second, 10, 20*time.Second, 200
	if cfg.quick {
		cfg.applyFor, cfg.trials, cfg.dnsFor, cfg.propTrials = 3*time.Second, 3, 5*time.Second, 30
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ps := newProcs()
	defer ps.stopAll()
	if cfg.dir == "" {
		d, err := os.MkdirTemp("", "dnsplan-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		cfg.dir = d
	}

	rep := newReport(cfg)
	err := measure(ctx, ps, cfg, rep)
	rep.finish()
	fmt.Print(rep.text())
	if err != nil {
		return err
	}
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(rep.markdown()), 0o644); err != nil {
			return err
		}
		fmt.Println("wrote", cfg.out)
	}
	return nil
}

// store is a replicated store under the apply and failover figures: a
// dnsplan cluster or an etcd cluster.
type store interface {
	name() string
	prepare(ctx context.Context, clients, maxOps int) (opFunc, error)
	leader(ctx context.Context) (int, error)
	kill(i int)
	restart(ctx context.Context, i int) error
	prepareFailover(ctx context.Context, trials int) error
	write(ctx context.Context) error
	stop()
}

func measure(ctx context.Context, ps *procs, cfg config, rep *report) error {
	want := func(f string) bool { return slices.Contains(cfg.figures, f) }
	if want("apply") || want("failover") || want("propagation") {
		stores := []func() (store, error){func() (store, error) {
			dir, err := mkdirTemp(cfg.dir, "dnsplan-")
			if err != nil {
				return nil, err
			}
			return startDnsplan(ctx, ps, cfg.bin, dir, cfg.serverCPUs, cfg.portBase)
		}}
		for k, e := range cfg.etcds {
			label, path, _ := strings.Cut(e, "=")
			rep.versions = append(rep.versions, label+": "+versionOf(path, "--version"))
			stores = append(stores, func() (store, error) {
				dir, err := mkdirTemp(cfg.dir, "etcd-")
				if err != nil {
					return nil, err
				}
				return startEtcd(ctx, ps, path, label, dir, cfg.serverCPUs, cfg.portBase+100*(k+1))
			})
		}
		for _, start := range stores {
			s, err := start()
			if err != nil {
				return err
			}
			err = measureStore(ctx, s, cfg, rep)
			s.stop()
			if err != nil {
				return fmt.Errorf("%s: %w", s.name(), err)
			}
		}
	}
	if want("dns") {
		servers := []dnsServer{dnsplanDNS(cfg.bin), knotDNS(), nsdDNS(), bindDNS()}
		for k, s := range servers {
			fmt.Printf("dns: %s, %s\n", s.Name, cfg.dnsFor)
			r := runDNS(ctx, ps, s, cfg.dir, cfg.dnsServer, cfg.dnsLoad, cfg.portBase+400+10*k, cfg.dnsFor)
			if r.Err != nil {
				fmt.Printf("dns: %s: %v\n", s.Name, r.Err)
			}
			rep.dns = append(rep.dns, r)
		}
	}
	return ctx.Err()
}

func measureStore(ctx context.Context, s store, cfg config, rep *report) error {
	if slices.Contains(cfg.figures, "apply") {
		for _, n := range cfg.clients {
			maxOps := int(cfg.applyFor.Seconds() * opsCap(n))
			op, err := s.prepare(ctx, n, maxOps)
			if err != nil {
				return err
			}
			r := runLoad(ctx, n, maxOps, cfg.applyFor, op)
			fmt.Printf("apply: %-20s %3d clients: %8.0f ops/s  p50 %-9s p99 %-9s (%d ok, %d failed) in %.1fs %s\n",
				s.name(), n, r.OpsPerSec(), ms(r.P50), ms(r.P99), r.OK, r.Failed, r.Elapsed.Seconds(), r.FirstErr)
			rep.addApply(s.name(), r)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	if d, ok := s.(*dnsplanCluster); ok && slices.Contains(cfg.figures, "propagation") {
		ts, err := d.propagation(ctx, cfg.propTrials)
		if err != nil {
			return fmt.Errorf("propagation: %w", err)
		}
		rep.propagation = ts
		fmt.Printf("propagation: %d trials: p50 %s p99 %s\n", len(ts), ms(percentile(ts, 0.5)), ms(percentile(ts, 0.99)))
	}
	if slices.Contains(cfg.figures, "failover") {
		f, err := runFailover(ctx, s, cfg.trials)
		if err != nil {
			return fmt.Errorf("failover: %w", err)
		}
		fmt.Printf("failover: %-20s %d trials: median %s worst %s\n", s.name(), len(f.Trials), ms(f.Median()), ms(f.Worst()))
		rep.addFailover(s.name(), f)
	}
	return nil
}

// opsCap is the most operations a second the apply figure prepares for
// with n clients: above what either system did on this machine idle
// (issue 14: 282, 1,879 and 6,631 ops/s), and no more, since dnsplan's
// prepared plans are part of its state during the run. A run that uses
// up its operations ends early; its rate is still operations over its
// own time.
func opsCap(n int) float64 {
	switch {
	case n <= 1:
		return 600
	case n <= 16:
		return 3000
	default:
		return 8000
	}
}

// runFailover SIGKILLs the leader trials times and measures the time to
// the first acknowledged write. Writes are attempted one after another,
// each given attemptTimeout and a failed one retried after 10ms, for at
// most 30s: the attempt's timeout bounds how long a write sent into the
// election can hide the new leader, so it is short, yet several times a
// write's p99 on this machine. The killed member is restarted and the
// cluster whole again before the next trial.
// attemptTimeout is the failover figure's timeout of one write.
const attemptTimeout = 300 * time.Millisecond

func runFailover(ctx context.Context, s store, trials int) (failover, error) {
	var f failover
	if err := s.prepareFailover(ctx, 2*trials+2); err != nil {
		return f, err
	}
	attempt := func(timeout time.Duration) error {
		actx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return s.write(actx)
	}
	for t := range trials {
		// A write first, so the client knows the leader as it would in
		// service.
		if err := attempt(5 * time.Second); err != nil {
			return f, fmt.Errorf("trial %d: write before the kill: %w", t+1, err)
		}
		l, err := s.leader(ctx)
		if err != nil {
			return f, err
		}
		start := time.Now()
		s.kill(l)
		for err = attempt(attemptTimeout); err != nil; err = attempt(attemptTimeout) {
			if time.Since(start) > 30*time.Second || ctx.Err() != nil {
				return f, fmt.Errorf("trial %d: no write within 30s: %w", t+1, errors.Join(err, ctx.Err()))
			}
			time.Sleep(10 * time.Millisecond)
		}
		f.Trials = append(f.Trials, time.Since(start))
		if err := s.restart(ctx, l); err != nil {
			return f, err
		}
		time.Sleep(time.Second) // a settled cluster, not one still catching up
	}
	return f, nil
}

// ms formats d in milliseconds with enough precision.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.2f ms", v)
	}
}
