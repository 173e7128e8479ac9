// Command dnsplan is the one binary of dnsplan: the cluster node, the
// operator's control tool, and (later) planner, enactor and demos. It is
// thin: flags, wiring, signals; the behaviour lives in the packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand: it parses its own flags from args.
type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"dev", "everything on one machine: three nodes, a planner, three enactors, sample backends", runDev},
		{"node", "run a cluster node (Raft, gRPC API, metrics)", runNode},
		{"ctl", "inspect and operate a cluster through its gRPC API", runCtl},
		{"probe", "check every node's DNS and the cluster for invariant violations, in a bounded loop", runProbe},
		{"enactor", "hold enactor leases and apply the newest plan to every node", runEnactor},
		{"planner", "probe load balancers and store DNS plans while holding the planner lease", runPlanner},
		{"backend", "serve a sample load-balancer target with a switchable /healthz", runBackend},
		{"scenario", "replay the AWS October 2025 race (aws-2025) against both designs, or a broken planner against the freeze on doubt (broken-planner)", runScenario},
		{"certs", "make a cluster CA and certificates that bind a role and a name (init, issue, show)", runCerts},
		{"etcd-auth", "turn etcd's authentication on so that only the nodes named (and root) may write the log (--store etcd)", runEtcdAuth},
		{"chaos", "seeded fault runs on a real 3-node cluster, checking I1–I5 (linearizability with porcupine), I7, L2 and L3", runChaos},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "dnsplan:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		return flag.ErrHelp
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: dnsplan <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery flag can also be set as DNSPLAN_<FLAG> (upper case, dashes as underscores); the flag wins.\n--force is taken from the command line only.")
}
