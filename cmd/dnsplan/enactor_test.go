package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

func TestRunEnactorFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--shards", "0"}, "--shards"},
		{[]string{"--keep-last", "0"}, "--keep-last"},
		{[]string{"--lease-ttl", "0s"}, "--lease-ttl"},
		{[]string{"--converge-timeout", "-1s"}, "--converge-timeout"},
		{[]string{"--id", ""}, "--id"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--no-such-flag"}, "not defined"},
	} {
		var stderr bytes.Buffer
		err := run(context.Background(), append([]string{"enactor", "--http-addr", ""}, tc.args...), io.Discard, &stderr)
		if err == nil || !strings.Contains(err.Error()+stderr.String(), tc.want) {
			t.Errorf("enactor %v: %v, want an error about %s", tc.args, err, tc.want)
		}
	}
}

// `dnsplan enactor` configured by flags and DNSPLAN_* variables applies a
// submitted plan, serves /healthz and /metrics, and on SIGTERM stops
// cleanly, releasing its lease.
func TestEnactorProcess(t *testing.T) {
	raftLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n, err := cluster.Start(cluster.Config{
		ID: "n1", DataDir: filepath.Join(t.TempDir(), "n1"), RaftListener: raftLis, GRPCListener: grpcLis,
		HeartbeatTimeout: 250 * time.Millisecond, ElectionTimeout: 250 * time.Millisecond, LeaderLeaseTimeout: 150 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler), RaftLogOutput: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	addr := grpcLis.Addr().String()
	cl, err := client.New([]string{addr})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	httpAddr := freePort(t)
	var log bytes.Buffer
	cmd := exec.Command(binary, "enactor", "--lease-ttl", "1s", "--http-addr", httpAddr, "--keep-last", "2")
	cmd.Env = append(os.Environ(), "DNSPLAN_CLUSTER="+addr, "DNSPLAN_ID=az-a", "DNSPLAN_CONVERGE_TIMEOUT=5s")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("enactor log:\n%s", log.String())
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: &pb.Plan{PlannerId: "test", Endpoints: []*pb.EndpointPlan{{
		Name: "api.dnsplan.test.", Ttl: 30, Targets: []*pb.Target{{Id: "lb-a", Address: "192.0.2.10", Weight: 1}},
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	poll(t, "the plan applied by az-a", func() bool {
		a, err := cl.GetApplied(ctx, &pb.GetAppliedRequest{Endpoint: "api.dnsplan.test."})
		return err == nil && a.GetGeneration() == resp.GetGeneration() && a.GetEnactorId() == "az-a"
	})
	get := func(path string) string {
		r, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			return ""
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		if r.StatusCode != http.StatusOK {
			return ""
		}
		return string(b)
	}
	poll(t, "/healthz to report the lease", func() bool { return strings.Contains(get("/healthz"), "az-a holds enactor/0") })
	poll(t, "/metrics to count the apply and its convergence", func() bool {
		m := get("/metrics")
		return strings.Contains(m, `dnsplan_enactor_applies_total{outcome="applied"} 1`) &&
			strings.Contains(m, "dnsplan_enactor_convergence_seconds_count 1")
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("enactor exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("enactor did not stop after SIGTERM")
	}
	hist, err := cl.ListHistory(ctx, &pb.ListHistoryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	released := false
	for _, ev := range hist.GetEvents() {
		released = released || (ev.GetKind() == "release" && ev.GetActor() == "az-a" && ev.GetOutcome() == "accepted")
	}
	if !released {
		t.Error("the enactor did not release its lease on SIGTERM")
	}
}

// poll waits for cond with a generous ceiling.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
