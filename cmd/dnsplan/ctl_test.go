package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/dnsplan/dnsplan/internal/loopback"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

const samplePlan = `{
  "plannerId": "planner1",
  "endpoints": [
    {"name": "api.dnsplan.test.", "ttl": 30, "targets": [
      {"id": "lb-a", "address": "192.0.2.10", "weight": 100},
      {"id": "lb-b", "address": "2001:db8::1", "weight": 0}
    ]}
  ],
  "createdAt": "2025-10-20T07:00:00Z"
}`

func TestParsePlan(t *testing.T) {
	p, err := parsePlan([]byte(samplePlan))
	if err != nil {
		t.Fatal(err)
	}
	want := &pb.Plan{
		PlannerId: "planner1",
		Endpoints: []*pb.EndpointPlan{{
			Name: "api.dnsplan.test.", Ttl: 30,
			Targets: []*pb.Target{
				{Id: "lb-a", Address: "192.0.2.10", Weight: 100},
				{Id: "lb-b", Address: "2001:db8::1"},
			},
		}},
		CreatedAt: timestamppb.New(time.Date(2025, 10, 20, 7, 0, 0, 0, time.UTC)),
	}
	if !proto.Equal(p, want) {
		t.Errorf("parsed %v, want %v", p, want)
	}

	for _, tc := range []struct {
		name, in, wantErr string
	}{
		{"empty", "  \n", "empty"},
		{"not json", "endpoints: []", "not a dnsplan.v1.Plan"},
		{"misspelt field", `{"endpoint": []}`, `unknown field "endpoint"`},
		{"wrong type", `{"endpoints": [{"ttl": "thirty"}]}`, "not a dnsplan.v1.Plan"},
		{"truncated", samplePlan[:40], "not a dnsplan.v1.Plan"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parsePlan([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestReadPlanFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "plan.json")
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(good, []byte(samplePlan), 0o600)
	os.WriteFile(bad, []byte(`{"endpoints": [`), 0o600)

	if p, err := readPlanFile(good, nil); err != nil || len(p.GetEndpoints()) != 1 {
		t.Errorf("good file: %v, %v", p, err)
	}
	if p, err := readPlanFile("-", strings.NewReader(samplePlan)); err != nil || p.GetPlannerId() != "planner1" {
		t.Errorf("stdin: %v, %v", p, err)
	}
	// A bad file's error names the file.
	if _, err := readPlanFile(bad, nil); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad file: err = %v, want it to name %s", err, bad)
	}
	if _, err := readPlanFile(filepath.Join(dir, "missing.json"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v, want os.ErrNotExist", err)
	}
}

func FuzzParsePlan(f *testing.F) {
	f.Add([]byte(samplePlan))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"endpoints":[{"targets":[{}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePlan(b)
		if err != nil {
			return
		}
		// Whatever parses prints back into something that parses the same.
		var out bytes.Buffer
		if err := writeJSON(&out, p); err != nil {
			t.Fatal(err)
		}
		q, err := parsePlan(out.Bytes())
		if err != nil || !proto.Equal(p, q) {
			t.Fatalf("round trip: %v, %v != %v", err, q, p)
		}
	})
}

func TestWriteJSONIsStableProtojson(t *testing.T) {
	resp := &pb.SubmitPlanResponse{Generation: 7}
	var out bytes.Buffer
	if err := writeJSON(&out, resp); err != nil {
		t.Fatal(err)
	}
	// protojson writes 64-bit integers as strings.
	if want := "{\n  \"generation\": \"7\"\n}\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
	p, _ := parsePlan([]byte(samplePlan))
	out.Reset()
	writeJSON(&out, p)
	if !strings.Contains(out.String(), `"createdAt": "2025-10-20T07:00:00Z"`) ||
		!strings.Contains(out.String(), `"plannerId": "planner1"`) {
		t.Errorf("plan JSON lacks lowerCamelCase fields:\n%s", out.String())
	}
}

// renderTable runs a text renderer through the table writer ctl uses.
func renderTable(f func(w io.Writer)) string {
	var b bytes.Buffer
	writeTable(&b, f)
	return b.String()
}

func TestRenderText(t *testing.T) {
	at := timestamppb.New(time.Date(2025, 10, 20, 7, 0, 0, 0, time.UTC))
	plan, _ := parsePlan([]byte(samplePlan))
	plan.Generation = 3
	for _, tc := range []struct {
		name string
		got  string
		want string
	}{
		{"plans", renderTable(func(w io.Writer) { renderPlans(w, []*pb.Plan{plan, {Generation: 12}}) }), `
GEN  PLANNER   CREATED               ENDPOINTS  TARGETS
3    planner1  2025-10-20T07:00:00Z  1          2
12   -         -                     0          0
`},
		{"plan", renderTable(func(w io.Writer) { renderPlan(w, plan) }), `
generation:  3
planner:     planner1
created:     2025-10-20T07:00:00Z
digest:      sha256:00e03dd0dd018ecf0d5279f5d7d0bf9d48dcf653ffd0ae88e49a7ff3189ec3be

ENDPOINT           TTL  TARGET  ADDRESS      WEIGHT
api.dnsplan.test.  30   lb-a    192.0.2.10   100
                        lb-b    2001:db8::1  0
`},
		{"applied", renderTable(func(w io.Writer) {
			renderApplied(w, []*pb.AppliedEndpoint{{
				Endpoint: "api.dnsplan.test.", Generation: 3, Ttl: 30, Targets: plan.Endpoints[0].Targets,
				EnactorId: "enactor-a", LeaseToken: 9, AppliedAt: at, Revision: 41,
			}, {Endpoint: "www.dnsplan.test.", Generation: 2}})
		}), `
ENDPOINT           GEN  TTL  TARGET  ADDRESS      WEIGHT  ENACTOR    TOKEN  REVISION  APPLIED
api.dnsplan.test.  3    30   lb-a    192.0.2.10   100     enactor-a  9      41        2025-10-20T07:00:00Z
                             lb-b    2001:db8::1  0
www.dnsplan.test.  2    0    -       -            -       -          0      0         -
`},
		{"leases", renderTable(func(w io.Writer) {
			now := at.AsTime()
			renderLeases(w, []*pb.Lease{
				{Name: "enact", Holder: "enactor-a", Token: 9, Ttl: durationpb.New(3 * time.Second),
					ExpiresAt: timestamppb.New(now.Add(2500 * time.Millisecond))},
				{Name: "plan", Holder: "planner1", Token: 4, ExpiresAt: timestamppb.New(now.Add(-time.Second))},
			}, now)
		}), `
NAME   HOLDER     TOKEN  TTL  EXPIRES               LEFT
enact  enactor-a  9      3s   2025-10-20T07:00:02Z  2.5s
plan   planner1   4      -    2025-10-20T06:59:59Z  expired
`},
		{"status", renderTable(func(w io.Writer) {
			renderStatus(w, []nodeStatus{
				{addr: "127.0.0.1:9001", st: &pb.StatusResponse{NodeId: "node1", State: "Follower", LeaderId: "node2", Term: 2, CommitIndex: 10, AppliedIndex: 10, DnsFloor: 11,
					LogVersion: 5, NodeLogVersion: 6}},
				{addr: "127.0.0.1:9002", st: &pb.StatusResponse{NodeId: "node2", State: "Leader", LeaderId: "node2", LeaderGrpcAddr: "127.0.0.1:9002", Term: 2, CommitIndex: 11, AppliedIndex: 11, DnsReady: true, DnsServedIndex: 11, Frozen: true, FreezeReason: "incident 42", Plans: 3, NextGeneration: 4, Endpoints: 2,
					LogVersion: 5, NodeLogVersion: 5}},
				{addr: "127.0.0.1:9003", err: status.Error(codes.Unavailable, "connection refused")},
			})
		}), `
ADDRESS         NODE   STATE        LEADER  TERM  COMMIT  APPLIED  SNAPSHOT  DNS
127.0.0.1:9001  node1  Follower     node2   2     10      10       0         servfail<11
127.0.0.1:9002  node2  Leader       node2   2     11      11       0         serving@11
127.0.0.1:9003  -      unreachable  -       -     -       -        -         -

127.0.0.1:9003 unreachable: Unavailable: connection refused

leader: node2 (127.0.0.1:9002), term 2
frozen: yes (incident 42)
plans: 3, next generation 4; endpoints applied: 2
log version: 5 active (node1 runs 6, node2 runs 5; a newer version takes effect once every member runs it)
`},
		{"history", renderTable(func(w io.Writer) {
			renderHistory(w, []*pb.HistoryEvent{
				{Index: 7, Time: at, KindCode: pb.HistoryKind_HISTORY_KIND_APPLY, Kind: "apply", Caller: "enactor/az-a", Actor: "az-a", Generation: 3, Endpoint: "api.dnsplan.test.",
					LeaseName: "enactor/0", Token: 9, OutcomeCode: pb.HistoryOutcome_HISTORY_OUTCOME_APPLIED, Outcome: "applied", PreviousGeneration: 2,
					Diff: &pb.EndpointDiff{Added: []string{"192.0.2.3"}, Removed: []string{"192.0.2.2"}, Weights: []*pb.WeightChange{{Address: "192.0.2.1", From: 1, To: 2}}, Omitted: 3}},
				{Index: 8, Time: at, KindCode: pb.HistoryKind_HISTORY_KIND_RENEW, Kind: "renew", Actor: "az-b", LeaseName: "enactor/0", Token: 4,
					OutcomeCode: pb.HistoryOutcome_HISTORY_OUTCOME_REJECTED, Outcome: "rejected", ReasonCode: "FENCED", Reason: "fenced: token 4 is not current"},
				{Index: 9, Kind: "freeze", Outcome: "frozen", Reason: "from a node before the codes"},
				{Index: 10, Time: at, KindCode: pb.HistoryKind_HISTORY_KIND_REFUSED_CALL, Caller: "reader/dash", Method: "SetFreeze", Count: 3,
					OutcomeCode: pb.HistoryOutcome_HISTORY_OUTCOME_REJECTED, ReasonCode: "PERMISSION", Reason: "node n2 refused 3 call(s): ..."},
			})
		}), `
INDEX  TIME                  KIND          CALLER        ACTOR  GEN  ENDPOINT           LEASE      TOKEN  OUTCOME              CHANGE                                                REASON
7      2025-10-20T07:00:00Z  apply         enactor/az-a  az-a   3    api.dnsplan.test.  enactor/0  9      applied              from 2: +192.0.2.3 -192.0.2.2 192.0.2.1 1→2 (3 more)
8      2025-10-20T07:00:00Z  renew         -             az-b   -    -                  enactor/0  4      rejected FENCED      -                                                     fenced: token 4 is not current
9      -                     freeze        -             -      -    -                  -          -      frozen               -                                                     from a node before the codes
10     2025-10-20T07:00:00Z  refused_call  reader/dash   -      -    -                  -          -      rejected PERMISSION  -                                                     node n2 refused 3 call(s): ...
`},
		{"diff", renderTable(func(w io.Writer) {
			minus75, plus0 := -75.0, 0.0
			renderDiff(w, &pb.PlanDiff{FromGeneration: 3, FromDigest: "sha256:aa", ToDigest: "sha256:bb", NewestGeneration: 4,
				Endpoints: []*pb.EndpointDiff{
					{Endpoint: "api.dnsplan.test.", Change: "changed", Removed: []string{"192.0.2.2"}, Weights: []*pb.WeightChange{{Address: "192.0.2.1", From: 100, To: 50}},
						AChangePercent: &minus75, AaaaChangePercent: &plus0, TtlFrom: 30, TtlTo: 60, Rules: []*pb.RuleCheck{
							{Rule: "family", Ok: true}, {Rule: "velocity", ReasonCode: "VELOCITY", Reason: "velocity limit exceeded: ..."}}},
					{Endpoint: "new.dnsplan.test.", Change: "added", Added: []string{"2001:db8::9"}, Rules: []*pb.RuleCheck{{Rule: "family", Ok: true}, {Rule: "velocity", Ok: true}}},
				}}, "plan.json")
		}), `
from:  generation 3   sha256:aa
to:    this plan, not stored   sha256:bb

ENDPOINT           CHANGE   ADDED        REMOVED    WEIGHTS                     A     AAAA  RULES
api.dnsplan.test.  changed  -            192.0.2.2  192.0.2.1 100→50 ttl 30→60  -75%  +0%   breaks VELOCITY
new.dnsplan.test.  added    2001:db8::9  -          -                           -     -     ok

api.dnsplan.test.: velocity: velocity limit exceeded: ...

nothing stored. To store exactly this plan on generation 4:
  dnsplan ctl submit -f plan.json --expect-parent 4 --expect-digest sha256:bb
`},
		{"cleanup", renderTable(func(w io.Writer) { renderCleanup(w, []uint64{1, 2}) }), `
deleted 2 plans: generations 1, 2
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if want := strings.TrimPrefix(tc.want, "\n"); tc.got != want {
				t.Errorf("got:\n%s\nwant:\n%s", tc.got, want)
			}
		})
	}
}

func TestRunCtlUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"-o", "yaml", "status"},
		{"status", "--output", "xml"},
		{"status", "extra"},
		{"submit"},
		{"plan"},
		{"plan", "x"},
		{"plan", "0"},
		{"cleanup"},
		{"remove-server"},
		{"add-voter", "--id", "n4"},
		{"applied", "a.", "b."},
		{"--timeout", "0s", "status"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runCtl(t.Context(), args, &stdout, &stderr)
			if !errors.Is(err, errCtlUsage) {
				t.Errorf("err = %v, want a usage error", err)
			}
		})
	}

	var stdout, stderr bytes.Buffer
	err := runCtl(t.Context(), []string{"bogus"}, &stdout, &stderr)
	if !strings.Contains(err.Error(), `unknown subcommand "bogus"`) {
		t.Errorf("err = %v", err)
	}
	if !strings.Contains(stderr.String(), "usage: dnsplan ctl") || !strings.Contains(stderr.String(), "transfer-leader") {
		t.Errorf("no usage on stderr:\n%s", stderr.String())
	}
	if err := runCtl(t.Context(), []string{"-h"}, &stdout, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: err = %v, want flag.ErrHelp", err)
	}
	if err := runCtl(t.Context(), []string{"submit", "-h"}, &stdout, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("submit -h: err = %v, want flag.ErrHelp", err)
	}
}

// ctlFakeNode stands in for a cluster node: enough to see ctl's wiring and
// its error reporting, not the cluster's behaviour.
type ctlFakeNode struct {
	pb.UnimplementedClusterServiceServer
	pb.UnimplementedPlanServiceServer
	st *pb.StatusResponse
}

func (n *ctlFakeNode) Status(context.Context, *pb.StatusRequest) (*pb.StatusResponse, error) {
	return n.st, nil
}

func (n *ctlFakeNode) SubmitPlan(_ context.Context, req *pb.SubmitPlanRequest) (*pb.SubmitPlanResponse, error) {
	if len(req.GetPlan().GetEndpoints()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "plan has no endpoints")
	}
	return &pb.SubmitPlanResponse{Generation: 5}, nil
}

func startCtlFake(t *testing.T, st *pb.StatusResponse) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	n := &ctlFakeNode{st: st}
	pb.RegisterClusterServiceServer(srv, n)
	pb.RegisterPlanServiceServer(srv, n)
	go srv.Serve(lis) //nolint:errcheck // ends with Stop
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func TestCtlAgainstFakeNode(t *testing.T) {
	live := startCtlFake(t, &pb.StatusResponse{NodeId: "node1", State: "Leader", LeaderId: "node1", Term: 1})
	dead := loopback.FreeAddr(t) // nothing listens there
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	empty := filepath.Join(dir, "empty.json")
	os.WriteFile(good, []byte(samplePlan), 0o600)
	os.WriteFile(empty, []byte(`{"plannerId": "p"}`), 0o600)

	ctl := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := runCtl(t.Context(), args, &stdout, &stderr)
		return stdout.String(), err
	}

	out, err := ctl("--cluster", live+","+dead, "status")
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if !strings.Contains(out, dead+" unreachable: Unavailable") || !strings.Contains(out, "leader: node1") {
		t.Errorf("status output:\n%s", out)
	}

	// Flags after the subcommand work too; JSON status is an array.
	out, err = ctl("--cluster", live+","+dead, "status", "-o", "json")
	if err != nil {
		t.Fatalf("status -o json: %v", err)
	}
	var nodes []struct {
		Address string          `json:"address"`
		Status  json.RawMessage `json:"status"`
		Error   string          `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &nodes); err != nil || len(nodes) != 2 {
		t.Fatalf("status JSON %q: %v", out, err)
	}
	var st pb.StatusResponse
	if err := protojson.Unmarshal(nodes[0].Status, &st); err != nil || st.GetNodeId() != "node1" {
		t.Errorf("first status %s: %v", nodes[0].Status, err)
	}
	if nodes[1].Error == "" || nodes[1].Status != nil {
		t.Errorf("second element %+v, want an error", nodes[1])
	}

	// DNSPLAN_CLUSTER stands in for --cluster.
	t.Setenv("DNSPLAN_CLUSTER", live)
	if out, err = ctl("submit", "-f", good); err != nil || !strings.HasPrefix(out, "generation 5\ndigest sha256:") {
		t.Errorf("submit: %q, %v", out, err)
	}
	// A gRPC error reads "<code>: <message>" (main prefixes "dnsplan: ").
	_, err = ctl("submit", "-f", empty)
	if err == nil || err.Error() != "InvalidArgument: plan has no endpoints" {
		t.Errorf("submit of an invalid plan: err = %v", err)
	}
	if status.Code(errors.Unwrap(err)) != codes.InvalidArgument {
		t.Errorf("error does not wrap the gRPC status: %v", err)
	}

	if _, err := ctl("health"); err != nil {
		t.Errorf("health of a node with a leader: %v", err)
	}
	if _, err := ctl("--cluster", live+","+dead, "health"); !errors.Is(err, errUnhealthy) {
		t.Errorf("health with a dead node: err = %v, want errUnhealthy", err)
	}
	if _, err := ctl("--cluster", dead, "status"); !errors.Is(err, errNoAnswer) {
		t.Errorf("status with no node up: err = %v, want errNoAnswer", err)
	}

	// A flag beats its environment variable, before or after the
	// subcommand.
	t.Setenv("DNSPLAN_CLUSTER", dead)
	if _, err := ctl("--cluster", live, "health"); err != nil {
		t.Errorf("--cluster before the subcommand lost to DNSPLAN_CLUSTER: %v", err)
	}
	if _, err := ctl("health", "--cluster", live); err != nil {
		t.Errorf("--cluster after the subcommand lost to DNSPLAN_CLUSTER: %v", err)
	}
	t.Setenv("DNSPLAN_OUTPUT", "json")
	if out, _ := ctl("--cluster", live, "status"); !strings.HasPrefix(out, "[") {
		t.Errorf("DNSPLAN_OUTPUT=json ignored:\n%s", out)
	}
	if out, _ := ctl("--cluster", live, "status", "-o", "text"); !strings.HasPrefix(out, "ADDRESS") {
		t.Errorf("-o text lost to DNSPLAN_OUTPUT:\n%s", out)
	}
}

func TestParseSince(t *testing.T) {
	for in, want := range map[string]*pb.ListHistoryRequest{
		"1h":                        {Within: durationpb.New(time.Hour)},
		"0s":                        {Within: durationpb.New(0)},
		"2026-12-01T10:00:00Z":      {Since: timestamppb.New(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))},
		"2026-12-01T10:00:00+01:00": {Since: timestamppb.New(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))},
	} {
		got := &pb.ListHistoryRequest{}
		if err := parseSince(in, got); err != nil || !proto.Equal(got, want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1h", "yesterday", "2026-12-01"} {
		if err := parseSince(bad, &pb.ListHistoryRequest{}); err == nil {
			t.Errorf("parseSince(%q) accepted", bad)
		}
	}
}

// A subcommand's flags may follow its arguments.
func TestFlagsFirst(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.String("o", "", "")
	fs.Bool("stale", false, "")
	fs.String("f", "", "")
	for _, tc := range []struct{ in, want []string }{
		{[]string{"3", "-o", "json"}, []string{"-o", "json", "--", "3"}},
		{[]string{"-o", "json", "3"}, []string{"-o", "json", "--", "3"}},
		{[]string{"3", "--stale", "4"}, []string{"--stale", "--", "3", "4"}},
		{[]string{"-f", "-", "--stale"}, []string{"-f", "-", "--stale"}},
		{[]string{"1", "--", "-2"}, []string{"--", "1", "-2"}},
		{[]string{"--o=json", "5"}, []string{"--o=json", "--", "5"}},
	} {
		if got := flagsFirst(fs, tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("flagsFirst(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
