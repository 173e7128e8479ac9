package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/internal/etcdtest"
)

// maxRun bounds a broken replay (with room: each takes a few seconds,
// and a loaded machine is slower). How long a run takes is measured, not
// asserted: the report says.
const maxRun = 90 * time.Second

func runDesign(t *testing.T, d contract.Design, opts Options) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*maxRun)
	defer cancel()
	opts.Logger = clustertest.Logger(t)
	opts.Dir = t.TempDir()
	rep, err := Run(ctx, d, opts)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := WriteText(&text, rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", text.String())
	return rep
}

// find returns the first event of timeline whose action contains s.
func find(t *testing.T, timeline []Event, s string) Event {
	t.Helper()
	for _, ev := range timeline {
		if strings.Contains(ev.Action, s) {
			return ev
		}
	}
	t.Fatalf("no step %q in the timeline", s)
	return Event{}
}

func allEmpty(ev Event) bool {
	for _, a := range ev.DNS {
		if !a.Empty() {
			return false
		}
	}
	return len(ev.DNS) == 3
}

func TestLegacyDesignFailsAsAtAWS(t *testing.T) {
	t.Parallel()
	rep := runDesign(t, contract.Legacy, Options{})
	want := Verdict{EmptyAnswerObserved: true, Regressed: true, Recovered: false}
	if rep.Verdict != want || !rep.AsExpected {
		t.Fatalf("legacy verdict %+v (as expected: %v), want %+v", rep.Verdict, rep.AsExpected, want)
	}
	// The mechanism, not only the outcome: the late write lands over 12,
	// the clean-up then deletes the plan it points at, and every node
	// answers with no addresses from then on.
	late := find(t, rep.Timeline, "delay over")
	for _, a := range late.DNS {
		if a.Generation != 2 || a.Empty() {
			t.Errorf("after the late write %s answers %s, want generation 2 with addresses", a.Node, a)
		}
	}
	var cleanups []Event
	for _, ev := range rep.Timeline {
		if strings.HasPrefix(ev.Action, "LegacyCleanup") {
			cleanups = append(cleanups, ev)
		}
	}
	if len(cleanups) != 2 || !strings.Contains(cleanups[1].Result, "including 2, which "+Regional) || !allEmpty(cleanups[1]) {
		t.Errorf("the second clean-up did not delete the live plan and empty the endpoint: %+v", cleanups)
	}
	last := rep.Timeline[len(rep.Timeline)-1]
	if !allEmpty(last) || !strings.Contains(last.Result, "blocked") {
		t.Errorf("last step %+v: want the legacy loops blocked and the endpoint still empty", last)
	}
	if rep.Checker.I1 == 0 || rep.Checker.I2 == 0 {
		t.Errorf("the checker missed the legacy failure: %+v", rep.Checker)
	}
}

func TestFixedDesignHolds(t *testing.T) {
	t.Parallel()
	rep := runDesign(t, contract.Fixed, Options{})
	want := Verdict{EmptyAnswerObserved: false, Regressed: false, Recovered: true}
	if rep.Verdict != want || !rep.AsExpected {
		t.Fatalf("fixed verdict %+v (as expected: %v), want %+v", rep.Verdict, rep.AsExpected, want)
	}
	if r := find(t, rep.Timeline, "old token").Result; !strings.Contains(r, "FAILED_PRECONDITION") || !strings.Contains(r, "fenced") {
		t.Errorf("the late apply with the old token was answered %q, want fenced", r)
	}
	if r := find(t, rep.Timeline, "fresh, valid token").Result; !strings.Contains(r, "OUTCOME_STALE for all 4") {
		t.Errorf("the old plan with a fresh token was answered %q, want STALE everywhere", r)
	}
	for _, ev := range rep.Timeline[2:] { // from the first apply on
		for _, a := range ev.DNS {
			if a.Empty() || a.Generation < 1 {
				t.Errorf("%s: %s answered %s", ev.Action, a.Node, a)
			}
		}
	}
	if rep.Checker.I1 != 0 || rep.Checker.I2 != 0 || rep.Checker.Rounds == 0 {
		t.Errorf("checker on the fixed design: %+v", rep.Checker)
	}
}

// On the etcd store the replay gives the same verdicts: the legacy design
// empties the endpoint and regresses it, the fixed design holds. One
// implementation of the rules under two logs.
func TestAWS2025OnEtcd(t *testing.T) {
	etcd := etcdtest.Start(t)
	opts := Options{Store: cluster.StoreEtcd, Etcd: cluster.EtcdConfig{Endpoints: etcd.Endpoints()}}
	for _, tc := range []struct {
		design contract.Design
		want   Verdict
	}{
		{contract.Legacy, Verdict{EmptyAnswerObserved: true, Regressed: true, Recovered: false}},
		{contract.Fixed, Verdict{EmptyAnswerObserved: false, Regressed: false, Recovered: true}},
	} {
		rep := runDesign(t, tc.design, opts)
		if rep.Verdict != tc.want || !rep.AsExpected {
			t.Errorf("%s on etcd: verdict %+v (as expected: %v), want %+v", tc.design, rep.Verdict, rep.AsExpected, tc.want)
		}
	}
}

// The checker can fail: the fixed script, with the late write and the
// clean-up sent through the legacy RPCs (as if the fence and the rule that
// keeps applied plans were gone), must be caught emptying and regressing
// the endpoint, and its verdict must no longer be the fixed design's.
func TestCheckerCatchesFixedStepsWithoutTheFence(t *testing.T) {
	t.Parallel()
	rep := runDesign(t, contract.Fixed, Options{unfenced: true})
	if !rep.EmptyAnswerObserved || !rep.Regressed {
		t.Fatalf("unfenced run not caught: %+v", rep.Verdict)
	}
	if rep.AsExpected {
		t.Fatal("an unfenced run passed as the fixed design")
	}
	if rep.Checker.I1 == 0 || rep.Checker.I2 == 0 {
		t.Errorf("the checker missed what the timeline saw: %+v", rep.Checker)
	}
	// The fixed enactor loops still repair the endpoint: a fixed apply
	// compares generations against the legacy pointer and writes records
	// of its own.
	if !rep.Recovered {
		t.Errorf("fixed loops did not repair the endpoint the bypass broke")
	}
}

func runBrokenPlanner(t *testing.T, opts Options) *BrokenPlannerReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*maxRun)
	defer cancel()
	opts.Logger = clustertest.Logger(t)
	opts.Dir = t.TempDir()
	rep, err := RunBrokenPlanner(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := WriteBrokenPlannerText(&text, rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", text.String())
	return rep
}

func TestBrokenPlannerFreezesOnDoubt(t *testing.T) {
	t.Parallel()
	rep := runBrokenPlanner(t, Options{})
	if rep.BrokenPlannerVerdict != ExpectedBrokenPlanner() || !rep.AsExpected {
		t.Fatalf("verdict %+v (as expected: %v), want %+v", rep.BrokenPlannerVerdict, rep.AsExpected, ExpectedBrokenPlanner())
	}
	// The mechanism, not only the outcome: the submission is answered
	// frozen on doubt, the enactors' applies are refused FROZEN, and the
	// operator's diff shows the six broken endpoints and why.
	if r := find(t, rep.Timeline, "source broken").Result; !strings.Contains(r, "frozen=true: doubt:") || !strings.Contains(r, "changes 6 of 12 endpoints") {
		t.Errorf("the bad plan's submission was answered %q, want frozen on doubt", r)
	}
	if r := find(t, rep.Timeline, "meet generation").Result; !strings.Contains(r, "FAILED_PRECONDITION, reason FROZEN") {
		t.Errorf("the enactors meeting the bad plan: %q, want refused FROZEN", r)
	}
	diff := find(t, rep.Timeline, "ctl diff")
	broken := 0
	for _, line := range diff.Detail {
		if strings.Contains(line, BadAddress) && strings.Contains(line, "changed") {
			broken++
		}
	}
	if broken != len(rep.Broken) || len(diff.Detail) == 0 || !strings.Contains(diff.Detail[0], "doubt:") {
		t.Errorf("the diff shows %d changed endpoints, want %d, and the doubt reason: %q", broken, len(rep.Broken), diff.Detail)
	}
	// Every node serves every endpoint's healthy records at every step
	// from the healthy plan on.
	for _, ev := range rep.Timeline[1:] {
		for _, a := range ev.DNS {
			if !healthyAnswer(a, rep.Healthy[a.Endpoint]) {
				t.Errorf("%s: %s answered %s for %s", ev.Action, a.Node, a, a.Endpoint)
			}
		}
	}
	if rep.Answers < 10*len(rep.Endpoints) || rep.Checker.I1 != 0 || rep.Checker.I2 != 0 || rep.Checker.Rounds == 0 {
		t.Errorf("%d answers judged; checker %+v", rep.Answers, rep.Checker)
	}
}

// The broken-planner checker can fail. Without the freeze on doubt the
// velocity limit still refuses the bad plan (a replaced address counts as
// removed), so nothing wrong reaches DNS, but the cluster did not freeze;
// without the velocity limit too, the bad plan is applied and every node
// serves the bad address until the rollback.
func TestCheckerCatchesBrokenPlannerWithoutDoubt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts Options
		want BrokenPlannerVerdict
	}{
		{"no doubt", Options{noDoubt: true},
			BrokenPlannerVerdict{FrozeOnDoubt: false, OldRecordsServed: true, BadAddressServed: false, Restored: true}},
		{"no doubt, no velocity limit", Options{noDoubt: true, noVelocity: true},
			BrokenPlannerVerdict{FrozeOnDoubt: false, OldRecordsServed: false, BadAddressServed: true, Restored: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rep := runBrokenPlanner(t, tc.opts)
			if rep.BrokenPlannerVerdict != tc.want {
				t.Errorf("verdict %+v, want %+v", rep.BrokenPlannerVerdict, tc.want)
			}
			if rep.AsExpected {
				t.Error("a cluster without the freeze on doubt passed as the fixed design")
			}
		})
	}
}

func TestWriteJSONIsOneLinePerDesign(t *testing.T) {
	rep := &Report{Design: contract.Fixed, Endpoint: Regional, Expected: Expected(contract.Fixed),
		Timeline: []Event{{Offset: 1500 * time.Millisecond, OffsetMS: 1500, Actor: "az-a", Action: "a", Result: "r",
			DNS: []Answer{{Node: "n1", Rcode: "NOERROR", Generation: 12, Addresses: []string{"192.0.2.11"}}}}}}
	rep.Recovered = true
	var b bytes.Buffer
	for range 2 {
		if err := WriteJSON(&b, rep); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), b.String())
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"design", "empty_answer_observed", "regressed", "recovered", "timeline", "expected", "as_expected", "findings", "checker"} {
		if _, ok := got[k]; !ok {
			t.Errorf("JSON has no %q: %s", k, lines[0])
		}
	}
	ev := got["timeline"].([]any)[0].(map[string]any)
	if ev["offset_ms"] != 1500.0 || ev["dns"].([]any)[0].(map[string]any)["generation"] != 12.0 {
		t.Errorf("timeline event %v", ev)
	}
}
