package cluster

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// /healthz, /readyz, the status page and /metrics answer on the HTTP port,
// and the metrics count rejections by reason.
func TestHTTPEndpoints(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.HTTPAddr = "127.0.0.1:0" })
	c.startAll()
	l := c.leader()
	base := "http://" + l.HTTPAddr()
	if code, body := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d %s", code, body)
	}
	waitFor(t, 5*time.Second, "/readyz ok", func() bool {
		code, _ := get(t, base+"/readyz")
		return code == 200
	})
	code, body := get(t, base+"/")
	var page struct{ State string }
	if err := json.Unmarshal([]byte(body), &page); code != 200 || err != nil || page.State != "Leader" {
		t.Fatalf("status page = %d %s (%v)", code, body, err)
	}
	ctx := ctxT(t)
	a := c.api(l.ID())
	if _, err := a.leases.RenewLease(ctx, &pb.RenewLeaseRequest{Name: "x", Holder: "y", Token: 1}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("renew of an unheld lease = %v", err)
	}
	if _, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 1)}); err != nil {
		t.Fatal(err)
	}
	_, body = get(t, base+"/metrics")
	for _, want := range []string{
		"dnsplan_raft_leader 1",
		`dnsplan_rejections_total{reason="fenced"} 1`,
		`dnsplan_commands_applied_total{command="submit_plan",outcome="ok"} 1`,
		`dnsplan_propose_seconds_count{command="submit_plan"} 1`,
		"dnsplan_plans 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// A node with no leader is alive but not ready.
func TestReadyzWithoutLeader(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.HTTPAddr = "127.0.0.1:0" })
	n := c.start("n1") // alone: its peers never start, so no leader
	if code, _ := get(t, "http://"+n.HTTPAddr()+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, body := get(t, "http://"+n.HTTPAddr()+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz without a leader = %d %s", code, body)
	}
	// Writes fail with UNAVAILABLE, not hang or crash.
	ctx := ctxT(t)
	_, err := c.api("n1").plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 1)})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("submit without a leader = %v, want Unavailable", err)
	}
}
