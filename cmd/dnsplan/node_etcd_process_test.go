package main

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/internal/etcdtest"
	"github.com/dnsplan/dnsplan/internal/loopback"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Two `dnsplan node --store etcd` processes, given the etcd endpoints by
// DNSPLAN_ETCD_ENDPOINTS, are one cluster with no founding list: a plan
// written through one is read at once through the other, both register in
// etcd under the prefix, transfer-leader is refused, ctl health and status
// judge them by the store's state, and a node stopped by SIGTERM leaves
// the registry.
func TestNodeProcessesOnEtcd(t *testing.T) {
	etcd := etcdtest.Start(t)
	env := []string{"DNSPLAN_ETCD_ENDPOINTS=" + strings.Join(etcd.Endpoints(), ",")}
	var addrs []string
	var procs []*process
	for _, id := range []string{"n1", "n2"} {
		addr := loopback.FreeAddr(t)
		addrs = append(addrs, addr)
		procs = append(procs, startProcess(t, id, env, "node", "--id", id, "--insecure", "--store", "etcd", "--etcd-prefix", "/proc/",
			"--data-dir", t.TempDir(), "--grpc-addr", addr, "--dns-addr", "", "--http-addr", ""))
	}
	n1, err := client.New(addrs[:1])
	if err != nil {
		t.Fatal(err)
	}
	defer n1.Close()
	n2, err := client.New(addrs[1:])
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()

	ctx, cancel := context.WithTimeout(context.Background(), processWait)
	defer cancel()
	clustertest.WaitFor(t, processWait, "both nodes registered and the policy founded", func() bool {
		st, err := n2.Status(ctx)
		return err == nil && st.GetState() == "Ready" && len(st.GetMembers()) == 2 && st.GetConfig() != nil
	})
	sub, err := n1.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: &pb.Plan{PlannerId: "p", Endpoints: []*pb.EndpointPlan{{
		Name: "api.dnsplan.test.", Ttl: 30, Targets: []*pb.Target{{Id: "a", Address: "192.0.2.1", Weight: 1}},
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := n2.GetPlan(ctx, &pb.GetPlanRequest{Generation: sub.GetGeneration()}); err != nil || p.GetGeneration() != sub.GetGeneration() {
		t.Fatalf("plan %d written through n1, read through n2: %v %v", sub.GetGeneration(), p, err)
	}
	keys, err := etcd.Client(t).Get(ctx, "/proc/members/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || keys.Count != 2 {
		t.Fatalf("registrations under /proc/members/: %v %v, want n1 and n2", keys, err)
	}
	if out, err := ctlRun(t, addrs[0], "--insecure", "transfer-leader"); err == nil || !strings.Contains(strings.ToLower(err.Error()), "failedprecondition") && !strings.Contains(err.Error(), "FAILED_PRECONDITION") {
		t.Fatalf("ctl transfer-leader on etcd: %q %v, want FailedPrecondition", out, err)
	}

	// ctl health and status speak of the store, not of a leader there is
	// none of.
	both := strings.Join(addrs, ",")
	if out, err := ctlRun(t, both, "--insecure", "health"); err != nil || strings.Count(out, "etcd store, Ready") != 2 {
		t.Fatalf("ctl health on etcd: %v\n%s", err, out)
	}
	if out, err := ctlRun(t, both, "--insecure", "status"); err != nil || !strings.Contains(out, "store: etcd (no dnsplan leader") {
		t.Fatalf("ctl status on etcd: %v\n%s", err, out)
	}

	procs[0].stop(t, 20*time.Second)
	clustertest.WaitFor(t, processWait, "n1 gone from the registry", func() bool {
		st, err := n2.Status(ctx)
		return err == nil && len(st.GetMembers()) == 1 && st.GetMembers()[0].GetId() == "n2"
	})
	procs[1].stop(t, 20*time.Second)
}
