package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dnsplan/dnsplan/internal/loopback"
)

// The node's velocity flags reach cluster.Config as given: 0 is a limit
// (no drop without force), not "unset".
func TestNodeConfigVelocityFlags(t *testing.T) {
	var stderr bytes.Buffer
	cfg, err := nodeConfig([]string{"--id", "n1", "--insecure", "--max-capacity-drop", "0", "--velocity-window", "90s"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxCapacityDrop == nil || *cfg.MaxCapacityDrop != 0 || cfg.VelocityWindow != 90*time.Second {
		t.Fatalf("max capacity drop %v, window %s; want 0 and 90s", cfg.MaxCapacityDrop, cfg.VelocityWindow)
	}
	cfg, err = nodeConfig([]string{"--id", "n1", "--insecure"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxCapacityDrop == nil || *cfg.MaxCapacityDrop != 0.5 || cfg.VelocityWindow != time.Minute {
		t.Fatalf("defaults: max capacity drop %v, window %s; want 0.5 and 1m", cfg.MaxCapacityDrop, cfg.VelocityWindow)
	}
}

func TestCtlConfigUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"config"},
		{"config", "frob"},
		{"config", "get", "extra"},
		{"config", "set", "max-capacity-drop"},
		{"config", "set", "max-capacity-drop", "1.5"},
		{"config", "set", "max-capacity-drop", "NaN"},
		{"config", "set", "velocity-window", "0s"},
		{"config", "set", "velocity-window", "sixty"},
		{"config", "set", "velocity-window", "48h"},
		{"config", "set", "design", "legacy"},
		{"config", "set", "colour", "blue"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if err := runCtl(t.Context(), args, &stdout, &stderr); !errors.Is(err, errCtlUsage) {
				t.Errorf("err = %v, want a usage error", err)
			}
		})
	}
}

// A `dnsplan node` founded with --max-capacity-drop 0 reports 0 through
// `ctl config get`; `ctl config set` changes the window; restarted with
// --legacy on its fixed data dir, the node exits non-zero saying why.
func TestNodeProcessConfigAndDesignMismatch(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	grpcAddr := loopback.FreeAddr(t)
	args := []string{"node", "--id", "n1", "--insecure", "--data-dir", dir, "--raft-addr", loopback.FreeAddr(t), "--grpc-addr", grpcAddr,
		"--dns-addr", "", "--http-addr", "", "--heartbeat-timeout", "300ms", "--election-timeout", "300ms", "--max-capacity-drop", "0"}
	n1 := startProcess(t, "n1", nil, args...)

	var out string
	deadline := time.Now().Add(processWait)
	for {
		var err error
		if out, err = ctlRun(t, grpcAddr, "config", "get"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("config get never answered: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			rows[f[0]] = f[1]
		}
	}
	for key, want := range map[string]string{"design": "fixed", "max-capacity-drop": "0", "velocity-window": "1m0s",
		"max-plan-change": "0.3", "max-velocity-refusals": "5", "max-read-back-failures": "0.5"} {
		if rows[key] != want {
			t.Fatalf("config get:\n%s\nwant %s %s", out, key, want)
		}
	}
	if out, err := ctlRun(t, grpcAddr, "config", "set", "velocity-window", "2m"); err != nil || !strings.Contains(out, "2m0s") {
		t.Fatalf("config set velocity-window 2m: %q, %v", out, err)
	}
	if out, err := ctlRun(t, grpcAddr, "-o", "json", "config", "get"); err != nil || !strings.Contains(out, `"velocityWindow": "120s"`) {
		t.Fatalf("config get -o json: %q, %v", out, err)
	}
	n1.stop(t, 20*time.Second)

	legacy := startProcess(t, "n1-legacy", nil, append(args, "--legacy")...)
	select {
	case <-legacy.done:
	case <-time.After(processWait):
		// A goroutine dump in the log shows where it hangs.
		legacy.cmd.Process.Signal(syscall.SIGQUIT)
		<-legacy.done
		t.Fatal("a --legacy node on a fixed cluster's data dir kept running")
	}
	var exit *exec.ExitError
	if !errors.As(legacy.err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit %v, want status 1", legacy.err)
	}
	if log := legacy.log.String(); !strings.Contains(log, "the cluster was founded with the fixed design") {
		t.Fatalf("log does not say why:\n%s", log)
	}
}
