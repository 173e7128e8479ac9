package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// memCore is a core with no Raft behind it: a proposal is encoded as a log
// entry and applied at once, in order, to the same state machine adapter
// the Raft node uses. It leads, alone, forever.
type memCore struct {
	m       *machine
	closing chan struct{}
	log     *slog.Logger

	// mu orders proposals; index is the last entry applied.
	mu    sync.Mutex
	index uint64
}

func newMemCore(t *testing.T) *memCore {
	c := &memCore{m: newMachine(nil), closing: make(chan struct{}), log: slog.New(slog.DiscardHandler)}
	t.Cleanup(func() { close(c.closing) })
	if _, err := c.propose(context.Background(), fsm.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *memCore) ID() string { return "mem" }

func (c *memCore) propose(_ context.Context, p proto.Message) (fsm.Result, error) {
	data, err := fsm.Command{Stamp: time.Now(), Payload: p}.Encode()
	if err != nil {
		return fsm.Result{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.index++
	res := c.m.Apply(&raft.Log{Index: c.index, Data: data}).(fsm.Result)
	return res, res.Err
}

func (c *memCore) read(f func(*fsm.State))            { c.m.read(f) }
func (c *memCore) changed() (<-chan struct{}, uint64) { return c.m.changed() }
func (c *memCore) done() <-chan struct{}              { return c.closing }
func (c *memCore) logger() *slog.Logger               { return c.log }
func (c *memCore) commitIndex() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.index
}
func (c *memCore) leaderContact() (bool, time.Time, string) { return true, time.Time{}, c.ID() }
func (c *memCore) Status() (*pb.StatusResponse, error) {
	return &pb.StatusResponse{NodeId: c.ID(), State: "Leader", LeaderId: c.ID(), CommitIndex: c.commitIndex()}, nil
}
func (c *memCore) hasMember(id string) (bool, error) { return id == c.ID(), nil }
func (c *memCore) ensureVoter(context.Context, string, string) error {
	return errors.New("a memory core has one member")
}
func (c *memCore) removeMember(context.Context, string) error {
	return errors.New("a memory core has one member")
}
func (c *memCore) transferLeadership(context.Context, string) (string, error) { return c.ID(), nil }

// serveServices serves the API's services on core over real gRPC, with the
// method table's validation and the error mapping, every call run locally
// (as on a leader). It returns a client of the project's own.
func serveServices(t *testing.T, c core) *client.Client {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := newConnTracker(lis)
	s := grpc.NewServer(
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			msg, ok := req.(proto.Message)
			if !ok {
				return nil, errNoMethod
			}
			if _, err := admit(info.FullMethod, msg); err != nil {
				return nil, toStatus(err)
			}
			resp, err := h(ctx, req)
			return resp, toStatus(err)
		}),
		grpc.ChainStreamInterceptor(streamErrors),
	)
	registerServices(s, c, newWatchHub(c, conns, watchLimitsOf(Config{}), prometheus.NewRegistry()), false)
	go func() { _ = s.Serve(conns) }()
	t.Cleanup(s.Stop)
	cl, err := client.New([]string{lis.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// The API's behaviour, with no Raft: validation at the edge, the rules'
// refusals as codes and reasons, reads, the typed history and a watch.
func TestServicesWithoutRaft(t *testing.T) {
	cl := serveServices(t, newMemCore(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	plan := func(addrs ...string) *pb.Plan {
		ep := &pb.EndpointPlan{Name: "api.dnsplan.test.", Ttl: 30}
		for i, a := range addrs {
			ep.Targets = append(ep.Targets, &pb.Target{Id: fmt.Sprintf("lb-%d", i+1), Address: a, Weight: 100})
		}
		return &pb.Plan{PlannerId: "p", Endpoints: []*pb.EndpointPlan{ep}}
	}

	// Validation at the edge: INVALID_ARGUMENT, reason INVALID.
	_, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: &pb.Plan{PlannerId: "p"}})
	if status.Code(err) != codes.InvalidArgument || client.Reason(err) != contract.ReasonInvalid {
		t.Fatalf("empty plan: %v (reason %q), want INVALID_ARGUMENT / INVALID", err, client.Reason(err))
	}

	sub, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan("192.0.2.1")})
	if err != nil || sub.GetGeneration() != 1 {
		t.Fatalf("submit: %v, generation %d", err, sub.GetGeneration())
	}
	got, err := cl.GetPlan(ctx, &pb.GetPlanRequest{Generation: 1})
	if err != nil || got.GetGeneration() != 1 {
		t.Fatalf("GetPlan: %v %v", got, err)
	}
	if _, err := cl.GetPlan(ctx, &pb.GetPlanRequest{Generation: 9}); status.Code(err) != codes.NotFound {
		t.Fatalf("GetPlan of an unknown generation: %v, want NOT_FOUND", err)
	}

	// Fencing: the holder's token applies; after another holder takes
	// the lease over, the old token is FENCED.
	a, err := cl.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/0", Holder: "az-a", Ttl: durationpb.New(50 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	apply := func(holder string, token uint64) (*pb.ApplyPlanResponse, error) {
		return cl.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: 1, LeaseName: "enactor/0", EnactorId: holder, LeaseToken: token})
	}
	res, err := apply("az-a", a.GetToken())
	if err != nil || len(res.GetResults()) != 1 || res.GetResults()[0].GetOutcome() != pb.Outcome_OUTCOME_APPLIED {
		t.Fatalf("apply with the current token: %v %v", res, err)
	}
	time.Sleep(100 * time.Millisecond) // the lease expires
	b, err := cl.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/0", Holder: "az-b", Ttl: durationpb.New(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := apply("az-a", a.GetToken()); status.Code(err) != codes.FailedPrecondition || client.Reason(err) != contract.ReasonFenced {
		t.Fatalf("apply with a superseded token: %v (reason %q), want FAILED_PRECONDITION / FENCED", err, client.Reason(err))
	}

	// Reads from the replica.
	ap, err := cl.GetApplied(ctx, &pb.GetAppliedRequest{Endpoint: "API.dnsplan.test."})
	if err != nil || ap.GetGeneration() != 1 || ap.GetLeaseToken() != a.GetToken() {
		t.Fatalf("GetApplied: %v %v", ap, err)
	}
	hist, err := cl.ListHistory(ctx, &pb.ListHistoryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	fenced := false
	for _, e := range hist.GetEvents() {
		if e.GetKindCode() == pb.HistoryKind_HISTORY_KIND_APPLY && e.GetOutcomeCode() == pb.HistoryOutcome_HISTORY_OUTCOME_REJECTED {
			fenced = e.GetReasonCode() == string(contract.ReasonFenced)
		}
	}
	if !fenced {
		t.Fatalf("history does not record the fenced apply with reason FENCED: %v", hist.GetEvents())
	}

	// A watch delivers what is stored, then what comes next.
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	done := errors.New("done")
	seen := make(chan uint64, 4)
	werr := make(chan error, 1)
	go func() {
		werr <- cl.WatchPlans(wctx, 1, func(p *pb.Plan) error {
			seen <- p.GetGeneration()
			if p.GetGeneration() == 2 {
				return done
			}
			return nil
		})
	}()
	if g := <-seen; g != 1 {
		t.Fatalf("watch delivered generation %d first, want 1", g)
	}
	if _, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan("192.0.2.1", "192.0.2.2")}); err != nil {
		t.Fatal(err)
	}
	if err := <-werr; !errors.Is(err, done) {
		t.Fatalf("watch: %v, want generation 2 delivered", err)
	}

	// The new holder applies it.
	res, err = cl.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: 2, LeaseName: "enactor/0", EnactorId: "az-b", LeaseToken: b.GetToken()})
	if err != nil || res.GetResults()[0].GetOutcome() != pb.Outcome_OUTCOME_APPLIED {
		t.Fatalf("apply by the new holder: %v %v", res, err)
	}
}
