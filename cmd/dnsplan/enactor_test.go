package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/internal/loopback"
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
	c := clustertest.Start(t, clustertest.Options{Nodes: 1})
	cl := c.Client()
	httpAddr := loopback.FreeAddr(t)
	proc := startProcess(t, "enactor", []string{"DNSPLAN_CLUSTER=" + c.GRPCAddrs[0], "DNSPLAN_ID=az-a", "DNSPLAN_CONVERGE_TIMEOUT=5s"},
		"enactor", "--lease-ttl", "1s", "--http-addr", httpAddr, "--keep-last", "2")

	resp, err := cl.SubmitPlan(clustertest.Ctx(t), &pb.SubmitPlanRequest{Plan: &pb.Plan{PlannerId: "test", Endpoints: []*pb.EndpointPlan{{
		Name: "api.dnsplan.test.", Ttl: 30, Targets: []*pb.Target{{Id: "lb-a", Address: "192.0.2.10", Weight: 1}},
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	clustertest.WaitFor(t, processWait, "the plan applied by az-a", func() bool {
		a, err := cl.GetApplied(clustertest.Ctx(t), &pb.GetAppliedRequest{Endpoint: "api.dnsplan.test."})
		return err == nil && a.GetGeneration() == resp.GetGeneration() && a.GetEnactorId() == "az-a"
	})
	clustertest.WaitFor(t, processWait, "/healthz to report the lease", func() bool {
		return strings.Contains(httpBody(httpAddr, "/healthz"), "az-a holds enactor/0")
	})
	clustertest.WaitFor(t, processWait, "/metrics to count the apply and its convergence", func() bool {
		m := httpBody(httpAddr, "/metrics")
		return strings.Contains(m, `dnsplan_enactor_applies_total{outcome="applied"} 1`) &&
			strings.Contains(m, "dnsplan_enactor_convergence_seconds_count 1")
	})

	proc.stop(t, 30*time.Second)
	wantReleased(t, cl, "az-a")
}
