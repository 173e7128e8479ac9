package chaos

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/contract"
)

// A short chaos run of each design: the fixed one passes every check, the
// legacy one is caught. Together they show that the checker holds the
// fixed design to I1–I5, I7, D1, L2 and L3 and that it can fail.

func TestChaosFixedDesignPasses(t *testing.T) {
	if testing.Short() {
		t.Skip("a 15-second fault run")
	}
	dir := t.TempDir()
	rep := runChaos(t, Config{Design: contract.Fixed, Seed: 1, Duration: 15 * time.Second, Dir: dir})
	if rep.Caught() || rep.Linearizability != porcupine.Ok {
		t.Fatalf("the fixed design failed the checks (linearizability %s):\n%s", rep.Linearizability, printed(rep))
	}
	// It ran on mutual TLS: every actor was issued a certificate of its
	// own by the run's CA.
	for _, name := range []string{"n1", "n2", "n3", "planner", "az-a", "az-b", "az-c", "observer", "operator"} {
		if _, err := os.Stat(auth.CertFile(filepath.Join(dir, "certs"), name)); err != nil {
			t.Errorf("no certificate for %s: %v", name, err)
		}
	}
	if rep.Injected < 3 || rep.Reads < 100 || rep.Applies < 10 || rep.PlansStored < 10 || rep.FenceChecked < 10 {
		t.Fatalf("the run did too little to mean anything:\n%s", printed(rep))
	}
	if len(rep.Files) != 0 {
		t.Errorf("a passing run wrote %v", rep.Files)
	}
}

func TestChaosLegacyDesignIsCaught(t *testing.T) {
	if testing.Short() {
		t.Skip("a fault run of up to 30 seconds")
	}
	rep := runChaos(t, Config{Design: contract.Legacy, Seed: 1, Duration: 30 * time.Second})
	if !rep.Caught() {
		t.Fatalf("the legacy design was not caught in 30s:\n%s", printed(rep))
	}
	out := printed(rep)
	for _, want := range []string{"seed 1", "reproduce with: dnsplan chaos --design legacy --seed 1", "violated here", "wrote"} {
		if !strings.Contains(out, want) {
			t.Errorf("the report does not say %q:\n%s", want, out)
		}
	}
	for _, f := range rep.Files {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Errorf("history file %s: %v", f, err)
		}
	}
	t.Logf("caught after %.1fs:\n%s", time.Duration(rep.Violations[0].At).Seconds(), out)
}

func runChaos(t *testing.T, cfg Config) *Report {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	cfg.Out, cfg.Logger = t.TempDir(), clustertest.Logger(t)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration+clustertest.LongWait)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep.Summary())
	return rep
}

func printed(rep *Report) string {
	var b bytes.Buffer
	rep.Print(&b)
	return b.String()
}
