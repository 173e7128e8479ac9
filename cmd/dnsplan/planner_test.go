package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dnsplan/dnsplan/backend"
	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/internal/loopback"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// plannerInventory is a one-endpoint inventory for these tests.
func plannerInventory(ttl int, check string) string {
	return fmt.Sprintf(`zone: dnsplan.test.
endpoints:
  - name: api.dnsplan.test.
    ttl: %d
    targets:
      - id: lb-a
        address: 192.0.2.10
        capacity: 100
        check: %s
`, ttl, check)
}

func TestRunPlannerFlagErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(plannerInventory(0, "http://192.0.2.10:8080/healthz")), 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(plannerInventory(30, "http://192.0.2.10:8080/healthz")), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--inventory is required"},
		{[]string{"--inventory", bad}, `endpoint "api.dnsplan.test.": ttl 0 outside 1..86400`},
		{[]string{"--inventory", filepath.Join(dir, "missing.yaml")}, "no such file"},
		{[]string{"--inventory", good, "--rise", "0"}, "--rise"},
		{[]string{"--inventory", good, "--fall", "-1"}, "--fall"},
		{[]string{"--inventory", good, "--interval", "0s"}, "--interval"},
		{[]string{"--inventory", good, "--probe-timeout", "0s"}, "--probe-timeout"},
		{[]string{"--inventory", good, "--lease-ttl", "0s"}, "--lease-ttl"},
		{[]string{"--inventory", good, "--lease-ttl", "2h"}, "lease ttl"},
		{[]string{"--inventory", good, "--id", ""}, "--id"},
		{[]string{"--inventory", good, "--log-level", "loud"}, "--log-level"},
		{[]string{"--no-such-flag"}, "not defined"},
	} {
		var stderr bytes.Buffer
		args := append([]string{"planner", "--http-addr", "", "--cluster", "127.0.0.1:1"}, tc.args...)
		err := run(context.Background(), args, io.Discard, &stderr)
		if err == nil || !strings.Contains(err.Error()+stderr.String(), tc.want) {
			t.Errorf("planner %v: %v, want an error about %s", tc.args, err, tc.want)
		}
	}
}

func TestRunBackend(t *testing.T) {
	addr := loopback.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"backend", "--id", "backend-7", "--addr", addr}, io.Discard, io.Discard)
	}()
	call := func(method, path string) (int, string) {
		req, err := http.NewRequest(method, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	clustertest.WaitFor(t, processWait, "the backend answering", func() bool {
		code, body := call("GET", "/")
		return code == http.StatusOK && strings.Contains(body, "backend-7")
	})
	for _, step := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/healthz", 200},
		{"POST", "/fail", 200},
		{"GET", "/healthz", 503},
		{"POST", "/recover", 200},
		{"GET", "/healthz", 200},
	} {
		if code, body := call(step.method, step.path); code != step.want {
			t.Errorf("%s %s: %d %q, want %d", step.method, step.path, code, body, step.want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("backend returned %v after its context ended", err)
	}

	if err := run(context.Background(), []string{"backend", "--addr", "not an address"}, io.Discard, io.Discard); err == nil {
		t.Error("backend accepted a bad --addr")
	}
}

// `dnsplan planner`, configured by flags and DNSPLAN_* variables, stores
// a plan from its inventory, reloads the inventory on SIGHUP (the poll
// interval is an hour, so nothing else could), serves /healthz and
// /metrics, and stops cleanly on SIGTERM, releasing its lease.
func TestPlannerProcess(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Nodes: 1})
	cl := c.Client()
	srv := httptest.NewServer(backend.New("lb-a").Handler())
	defer srv.Close()
	inv := filepath.Join(t.TempDir(), "inventory.yaml")
	if err := os.WriteFile(inv, []byte(plannerInventory(30, srv.URL+"/healthz")), 0o644); err != nil {
		t.Fatal(err)
	}

	httpAddr := loopback.FreeAddr(t)
	proc := startProcess(t, "planner", []string{"DNSPLAN_CLUSTER=" + c.GRPCAddrs[0], "DNSPLAN_ID=planner-a", "DNSPLAN_RISE=1"},
		"planner", "--inventory", inv, "--interval", "1h", "--lease-ttl", "1s", "--http-addr", httpAddr)

	plan := func() *pb.Plan {
		p, err := cl.GetPlan(clustertest.Ctx(t), &pb.GetPlanRequest{Newest: true})
		if err != nil {
			return nil
		}
		return p
	}
	clustertest.WaitFor(t, processWait, "the planner's first plan", func() bool {
		p := plan()
		return p != nil && p.GetPlannerId() == "planner-a" && p.GetEndpoints()[0].GetTtl() == 30 &&
			p.GetEndpoints()[0].GetTargets()[0].GetWeight() == 100
	})
	clustertest.WaitFor(t, processWait, "/healthz to report the lease", func() bool {
		return strings.Contains(httpBody(httpAddr, "/healthz"), "planner-a holds the planner lease")
	})

	if err := os.WriteFile(inv, []byte(plannerInventory(45, srv.URL+"/healthz")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	clustertest.WaitFor(t, processWait, "the plan with the reloaded ttl", func() bool {
		p := plan()
		return p != nil && p.GetEndpoints()[0].GetTtl() == 45
	})
	clustertest.WaitFor(t, processWait, "/metrics to count the plans and the reload", func() bool {
		m := httpBody(httpAddr, "/metrics")
		return strings.Contains(m, "dnsplan_planner_plans_submitted_total 2") &&
			strings.Contains(m, "dnsplan_planner_inventory_reloads_total 1") &&
			strings.Contains(m, "dnsplan_planner_lease_held 1")
	})

	proc.stop(t, 30*time.Second)
	wantReleased(t, cl, "planner-a")
}

// An invalid inventory at start is a clear error and exit status 1.
func TestPlannerProcessInvalidInventory(t *testing.T) {
	inv := filepath.Join(t.TempDir(), "inventory.yaml")
	if err := os.WriteFile(inv, []byte(plannerInventory(30, "ftp://192.0.2.10/")), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(binary, "planner", "--inventory", inv, "--http-addr", "", "--cluster", "127.0.0.1:1")
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit %v, want status 1", err)
	}
	if want := `target "lb-a": check "ftp://192.0.2.10/": scheme must be http, https or tcp`; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q does not say %q", stderr.String(), want)
	}
}
