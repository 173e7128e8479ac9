package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// `dnsplan scenario aws-2025 -o json` replays both designs, prints one
// JSON object per design, one per line, and succeeds because each design
// behaved as expected.
func TestScenarioAWS2025BothDesignsJSON(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"scenario", "aws-2025", "-o", "json"}, &stdout, &stderr); err != nil {
		t.Fatalf("scenario: %v\nstderr: %s\nstdout: %s", err, stderr.String(), stdout.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines of JSON, want one per design:\n%s", len(lines), stdout.String())
	}
	want := map[string][3]bool{ // empty_answer_observed, regressed, recovered
		"legacy": {true, true, false},
		"fixed":  {false, false, true},
	}
	for i, line := range lines {
		var rep struct {
			Design              string            `json:"design"`
			EmptyAnswerObserved bool              `json:"empty_answer_observed"`
			Regressed           bool              `json:"regressed"`
			Recovered           bool              `json:"recovered"`
			AsExpected          bool              `json:"as_expected"`
			Timeline            []json.RawMessage `json:"timeline"`
		}
		if err := json.Unmarshal([]byte(line), &rep); err != nil {
			t.Fatalf("line %d: %v: %s", i+1, err, line)
		}
		if wantDesign := []string{"legacy", "fixed"}[i]; rep.Design != wantDesign {
			t.Errorf("line %d is design %q, want %q", i+1, rep.Design, wantDesign)
		}
		got := [3]bool{rep.EmptyAnswerObserved, rep.Regressed, rep.Recovered}
		if got != want[rep.Design] || !rep.AsExpected || len(rep.Timeline) < 10 {
			t.Errorf("%s: verdict %v (as expected %v, %d events), want %v", rep.Design, got, rep.AsExpected, len(rep.Timeline), want[rep.Design])
		}
	}
}

// `dnsplan scenario broken-planner -o json` prints one JSON object and
// succeeds because the fixed design froze on the bad plan, kept serving
// the old records and was restored by rollback and unfreeze.
func TestScenarioBrokenPlannerJSON(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"scenario", "broken-planner", "-o", "json"}, &stdout, &stderr); err != nil {
		t.Fatalf("scenario: %v\nstderr: %s\nstdout: %s", err, stderr.String(), stdout.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d lines of JSON, want one:\n%s", len(lines), stdout.String())
	}
	var rep struct {
		Scenario         string            `json:"scenario"`
		Design           string            `json:"design"`
		FrozeOnDoubt     bool              `json:"froze_on_doubt"`
		OldRecordsServed bool              `json:"old_records_served"`
		BadAddressServed bool              `json:"bad_address_served"`
		Restored         bool              `json:"restored"`
		AsExpected       bool              `json:"as_expected"`
		Timeline         []json.RawMessage `json:"timeline"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &rep); err != nil {
		t.Fatalf("%v: %s", err, lines[0])
	}
	if rep.Scenario != "broken-planner" || rep.Design != "fixed" || !rep.FrozeOnDoubt || !rep.OldRecordsServed || rep.BadAddressServed ||
		!rep.Restored || !rep.AsExpected || len(rep.Timeline) < 7 {
		t.Errorf("report %+v (%d events)", rep, len(rep.Timeline))
	}
}

func TestScenarioUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"scenario"}, "aws-2025"},
		{[]string{"scenario", "aws-2024"}, "unknown scenario"},
		{[]string{"scenario"}, "broken-planner"},
		{[]string{"scenario", "broken-planner", "--design", "fixed"}, "-design"},
		{[]string{"scenario", "broken-planner", "-o", "yaml"}, "text or json"},
		{[]string{"scenario", "aws-2025", "--design", "new"}, "fixed, legacy or both"},
		{[]string{"scenario", "aws-2025", "-o", "yaml"}, "text or json"},
		{[]string{"scenario", "aws-2025", "--log-level", "loud"}, "--log-level"},
	} {
		var stderr bytes.Buffer
		err := run(context.Background(), tc.args, io.Discard, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error about %q", tc.args, err, tc.want)
		}
	}
}

// `dnsplan enactor --legacy` runs the legacy enactor: against a --legacy
// node it writes legacy pointers, and --legacy-delay is checked.
func TestRunEnactorLegacy(t *testing.T) {
	err := run(context.Background(), []string{"enactor", "--http-addr", "", "--legacy", "--legacy-delay", "-1s"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "legacy delay") {
		t.Errorf("negative --legacy-delay: %v", err)
	}

	c := clustertest.Start(t, clustertest.Options{Nodes: 1, Design: contract.Legacy})
	cl := c.Client()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// The enactor runs until cancel, as until SIGTERM.
	go func() {
		done <- run(ctx, []string{"enactor", "--cluster", c.GRPCAddrs[0], "--id", "az-a", "--http-addr", "",
			"--legacy", "--legacy-delay", "10ms", "--log-level", "error"}, io.Discard, io.Discard)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("enactor --legacy: %v", err)
		}
	}()
	plan := &pb.Plan{PlannerId: "test", Endpoints: []*pb.EndpointPlan{{Name: "api.dnsplan.test.", Ttl: 5,
		Targets: []*pb.Target{{Id: "lb-1", Address: "192.0.2.11", Weight: 1}}}}}
	resp, err := cl.SubmitPlan(clustertest.Ctx(t), &pb.SubmitPlanRequest{Plan: plan})
	if err != nil {
		t.Fatal(err)
	}
	clustertest.WaitFor(t, clustertest.LongWait, "a legacy pointer to the plan", func() bool {
		a, err := cl.GetApplied(clustertest.Ctx(t), &pb.GetAppliedRequest{Endpoint: "api.dnsplan.test."})
		return err == nil && a.GetLegacyPointer() && a.GetGeneration() == resp.GetGeneration() && a.GetEnactorId() == "az-a"
	})
}
