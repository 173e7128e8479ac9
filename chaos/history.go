package chaos

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Unknown is the Return time of an operation whose outcome is unknown (the
// call failed in a way that does not say whether it took effect): it may
// take effect at any time after its call, porcupine's convention.
const Unknown = math.MaxInt64

// Op is one operation on one endpoint's applied generation, the register
// the linearizability check models: a read returns it; an apply of
// generation Gen makes it max(itself, Gen) and reports the result.
type Op struct {
	Endpoint string `json:"endpoint"`
	// Kind is "read", "apply" (the fixed design's conditional apply) or
	// "legacy_apply" (the legacy design's unconditional one).
	Kind  string `json:"kind"`
	Actor string `json:"actor"`
	Gen   uint64 `json:"gen,omitempty"` // an apply's generation
	// Out is a read's result (0: nothing applied) or the generation an
	// acknowledged apply reported the endpoint at; Known is false when the
	// outcome is unknown.
	Out   uint64 `json:"out"`
	Known bool   `json:"known"`
	// Applied is set on an acknowledged apply that the cluster reported
	// as applied (not stale) for this endpoint.
	Applied bool `json:"applied,omitempty"`
	// Token is the fixed design's lease token of an apply.
	Token uint64 `json:"token,omitempty"`
	// Call and Return are nanoseconds since the run started; Return is
	// Unknown when the outcome is.
	Call   int64 `json:"call"`
	Return int64 `json:"return"`
}

func (o Op) String() string {
	ret := "?"
	if o.Return != Unknown {
		ret = fmtNanos(o.Return)
	}
	var what string
	switch {
	case o.Kind == "read":
		what = fmt.Sprintf("read → %d", o.Out)
	case !o.Known:
		what = fmt.Sprintf("%s(%d) → outcome unknown", o.Kind, o.Gen)
	default:
		what = fmt.Sprintf("%s(%d) → %d", o.Kind, o.Gen, o.Out)
	}
	return fmt.Sprintf("[%s, %s] %-8s %-26s %s", fmtNanos(o.Call), ret, o.Actor, o.Endpoint, what)
}

// Event is one line of the run's timeline: a fault and its healing, a
// plan stored, a clean-up, or an observation worth keeping.
type Event struct {
	At       int64  `json:"at"` // nanoseconds since the run started
	Kind     string `json:"kind"`
	Actor    string `json:"actor,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	Gen      uint64 `json:"gen,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

func (e Event) String() string {
	s := fmt.Sprintf("%s %-14s", fmtNanos(e.At), e.Kind)
	if e.Actor != "" {
		s += " " + e.Actor
	}
	if e.Endpoint != "" {
		s += " " + e.Endpoint
	}
	if e.Gen != 0 {
		s += fmt.Sprintf(" gen=%d", e.Gen)
	}
	if e.Detail != "" {
		s += " " + e.Detail
	}
	return s
}

// Violation is one breach of an invariant.
type Violation struct {
	Invariant string `json:"invariant"` // I1..I5
	// Source is the check that found it: "linearizability", "online",
	// "dns", "replica", "audit" or "final".
	Source   string `json:"source"`
	Node     string `json:"node,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	Detail   string `json:"detail"`
	At       int64  `json:"at"` // nanoseconds since the run started
}

func (v Violation) String() string {
	s := fmt.Sprintf("%s at %s (%s", v.Invariant, fmtNanos(v.At), v.Source)
	if v.Node != "" {
		s += ", " + v.Node
	}
	if v.Endpoint != "" {
		s += ", " + v.Endpoint
	}
	return s + "): " + v.Detail
}

// fmtNanos prints nanoseconds since the start as seconds, e.g. "+12.345s".
func fmtNanos(ns int64) string { return fmt.Sprintf("+%.3fs", float64(ns)/1e9) }

// maxViolations bounds what a run keeps of a violation that repeats (a
// deleted plan seen on every observation): the first ones explain it.
const maxViolations = 200

// recorder is the run's history: operations for the linearizability
// check, the timeline, and violations. It also checks, as operations
// return, the cheap necessary condition of linearizability that lets a
// run stop at the first violation rather than at its end: an operation
// must not report an older generation than one some operation had
// reported before it was called.
type recorder struct {
	start     time.Time
	endpoints []string // every plan holds every one of them

	// mu guards everything below: actors' interceptors, observers and
	// fault injection all record concurrently.
	mu         sync.Mutex
	ops        []Op
	events     []Event
	violations []Violation
	acked      map[uint64]int64   // generation → when its SubmitPlan was acknowledged
	grants     map[string][]grant // lease name → grants acknowledged to enactors
	floor      map[string]uint64
	// applied is when an operation first reported each endpoint applied
	// (its return time): from then on the endpoint must resolve.
	applied map[string]int64
	// refused lists, per endpoint, the applies the cluster refused for it
	// (OUTCOME_REFUSED, e.g. velocity): a rule, not a liveness failure.
	refused map[string][]refusal
	// violated is closed at the first violation, to stop the run early.
	violated chan struct{}
}

func newRecorder(endpoints []string) *recorder {
	return &recorder{
		start:     time.Now(),
		endpoints: endpoints,
		acked:     map[uint64]int64{},
		grants:    map[string][]grant{},
		floor:     map[string]uint64{},
		applied:   map[string]int64{},
		refused:   map[string][]refusal{},
		violated:  make(chan struct{}),
	}
}

// now is the time since the run started, in nanoseconds.
func (r *recorder) now() int64 { return int64(time.Since(r.start)) }

func (r *recorder) event(e Event) {
	if e.At == 0 {
		e.At = r.now()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) violate(v Violation) {
	if v.At == 0 {
		v.At = r.now()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.violations) == 0 {
		close(r.violated)
	}
	if len(r.violations) < maxViolations {
		r.violations = append(r.violations, v)
	}
}

// floorOf is the newest generation an operation on endpoint has reported
// so far; an operation called now must not report an older one.
func (r *recorder) floorOf(endpoint string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.floor[endpoint]
}

// op records a completed operation; floorAtCall is floorOf(endpoint) when
// it was called.
func (r *recorder) op(o Op, floorAtCall uint64) {
	r.mu.Lock()
	r.ops = append(r.ops, o)
	if o.Known {
		r.floor[o.Endpoint] = max(r.floor[o.Endpoint], o.Out)
		if _, ok := r.applied[o.Endpoint]; !ok && o.Out > 0 {
			r.applied[o.Endpoint] = o.Return
		}
	}
	r.mu.Unlock()
	if o.Known && o.Out < floorAtCall {
		r.violate(Violation{Invariant: "I1", Source: "online", Endpoint: o.Endpoint, At: o.Return,
			Detail: fmt.Sprintf("%s by %s reported generation %d, but generation %d had been reported before it was called",
				o.Kind, o.Actor, o.Out, floorAtCall)})
	}
}

// refusal is an apply the cluster refused for one endpoint.
type refusal struct {
	gen uint64
	at  int64 // when the answer came
}

// appliedSince reports when an operation first reported endpoint applied.
func (r *recorder) appliedSince(endpoint string) (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.applied[endpoint]
	return at, ok
}

// read runs one linearizable read of endpoint and records it; a read that
// fails is left out (it returned nothing).
func (r *recorder) read(ctx context.Context, c *client.Client, actor, endpoint string) {
	floor := r.floorOf(endpoint)
	call := r.now()
	a, err := c.GetApplied(ctx, &pb.GetAppliedRequest{Endpoint: endpoint})
	ret := r.now()
	var out uint64
	switch {
	case client.Reason(err) == contract.ReasonNotFound:
		out = 0 // nothing applied yet
	case err != nil:
		return
	default:
		out = a.GetGeneration()
		if !hasAddress(a) {
			r.violate(Violation{Invariant: "I2", Source: "online", Endpoint: endpoint, At: ret,
				Detail: fmt.Sprintf("linearizable read by %s: generation %d is applied but serves no address", actor, out)})
		}
	}
	r.op(Op{Endpoint: endpoint, Kind: "read", Actor: actor, Out: out, Known: true, Call: call, Return: ret}, floor)
}

// interceptor records what an actor's client sends that the checks need:
// every attempt of an apply (each attempt is one operation: a retried
// apply may take effect more than once), plans stored, and clean-ups.
func (r *recorder) interceptor(actor string) client.Option {
	return client.WithDialOptions(grpc.WithChainUnaryInterceptor(
		func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			switch rq := req.(type) {
			case *pb.ApplyPlanRequest:
				return r.recordApply(actor, rq, reply, func() error { return invoker(ctx, method, req, reply, cc, opts...) })
			case *pb.LegacyApplyRequest:
				return r.recordLegacyApply(actor, rq, func() error { return invoker(ctx, method, req, reply, cc, opts...) })
			}
			err := invoker(ctx, method, req, reply, cc, opts...)
			if err != nil {
				return err
			}
			switch rs := reply.(type) {
			case *pb.SubmitPlanResponse:
				r.mu.Lock()
				r.acked[rs.GetGeneration()] = r.now()
				r.mu.Unlock()
				r.event(Event{Kind: "plan-stored", Actor: actor, Gen: rs.GetGeneration()})
			case *pb.Lease:
				if _, acquire := req.(*pb.AcquireLeaseRequest); acquire {
					r.mu.Lock()
					r.grants[rs.GetName()] = append(r.grants[rs.GetName()], grant{token: rs.GetToken(), holder: rs.GetHolder(), at: r.now()})
					r.mu.Unlock()
					r.event(Event{Kind: "lease-acquired", Actor: actor, Detail: fmt.Sprintf("%s token %d", rs.GetName(), rs.GetToken())})
				}
			case *pb.CleanupPlansResponse:
				if len(rs.GetDeleted()) > 0 {
					r.event(Event{Kind: "cleanup", Actor: actor, Detail: fmt.Sprintf("deleted %v", rs.GetDeleted())})
				}
			case *pb.LegacyCleanupResponse:
				if len(rs.GetDeleted()) > 0 {
					r.event(Event{Kind: "legacy-cleanup", Actor: actor, Detail: fmt.Sprintf("deleted %v", rs.GetDeleted())})
				}
			}
			return nil
		}))
}

// noEffect reports whether a failed call certainly did nothing: the
// cluster answered with a business rejection (fenced, stale lease, not
// found, frozen, invalid), which changes nothing but the audit history.
// Any other failure (unavailable, deadline, cancelled) may have taken
// effect.
func noEffect(err error) bool { return client.Reason(err) != "" }

func (r *recorder) recordApply(actor string, req *pb.ApplyPlanRequest, reply any, invoke func() error) error {
	endpoints := req.GetEndpoints()
	if len(endpoints) == 0 {
		endpoints = r.endpoints
	}
	floors := make([]uint64, len(endpoints))
	for i, ep := range endpoints {
		floors[i] = r.floorOf(ep)
	}
	call := r.now()
	err := invoke()
	ret := r.now()
	switch {
	case err == nil:
		r.checkToken(req, call, ret)
		results := map[string]*pb.EndpointResult{}
		for _, res := range reply.(*pb.ApplyPlanResponse).GetResults() {
			results[res.GetEndpoint()] = res
		}
		for i, ep := range endpoints {
			o := Op{Endpoint: ep, Kind: "apply", Actor: actor, Gen: req.GetGeneration(), Token: req.GetLeaseToken(), Call: call, Return: Unknown}
			if res, ok := results[ep]; ok && res.GetOutcome() == pb.Outcome_OUTCOME_REFUSED {
				// Refused by the endpoint's rule: nothing changed, so it
				// is no operation on the register.
				r.mu.Lock()
				r.refused[ep] = append(r.refused[ep], refusal{gen: req.GetGeneration(), at: ret})
				r.mu.Unlock()
				r.event(Event{Kind: "apply-refused", Actor: actor, Endpoint: ep, Gen: req.GetGeneration(), Detail: res.GetReason()})
				continue
			}
			if res, ok := results[ep]; ok {
				o.Out, o.Known, o.Return = res.GetAppliedGeneration(), true, ret
				o.Applied = res.GetOutcome() == pb.Outcome_OUTCOME_APPLIED
			}
			r.op(o, floors[i])
		}
	case noEffect(err):
	default:
		for i, ep := range endpoints {
			r.op(Op{Endpoint: ep, Kind: "apply", Actor: actor, Gen: req.GetGeneration(), Token: req.GetLeaseToken(), Call: call, Return: Unknown}, floors[i])
		}
	}
	return err
}

// grant is a lease grant an enactor's client saw acknowledged.
type grant struct {
	token  uint64
	holder string
	at     int64 // when the acquire returned
}

// checkToken is I4 as clients see it: an apply the cluster accepted must
// not carry a token older than one whose grant was acknowledged before the
// apply was sent. (Tokens are log indexes, so a newer grant has a larger
// token, whoever holds it.)
func (r *recorder) checkToken(req *pb.ApplyPlanRequest, call, ret int64) {
	r.mu.Lock()
	var newer *grant
	for _, g := range r.grants[req.GetLeaseName()] {
		if g.token > req.GetLeaseToken() && g.at < call {
			newer = &g
			break
		}
	}
	r.mu.Unlock()
	if newer != nil {
		r.violate(Violation{Invariant: "I4", Source: "online", At: ret,
			Detail: fmt.Sprintf("apply of generation %d by %s with token %d of lease %s was accepted, but token %d had been granted to %s at %s, before it was sent",
				req.GetGeneration(), req.GetEnactorId(), req.GetLeaseToken(), req.GetLeaseName(), newer.token, newer.holder, fmtNanos(newer.at))})
	}
}

// recordLegacyApply records the legacy design's unconditional write. Its
// acknowledgement means the endpoint now serves the generation written;
// the register model says an apply leaves max(applied, written), so an
// acknowledged write of an older generation is a regression the check
// finds.
func (r *recorder) recordLegacyApply(actor string, req *pb.LegacyApplyRequest, invoke func() error) error {
	ep := req.GetEndpoint()
	floor := r.floorOf(ep)
	call := r.now()
	err := invoke()
	ret := r.now()
	switch {
	case err == nil:
		r.op(Op{Endpoint: ep, Kind: "legacy_apply", Actor: actor, Gen: req.GetGeneration(), Out: req.GetGeneration(), Known: true, Applied: true, Call: call, Return: ret}, floor)
	case noEffect(err):
	default:
		r.op(Op{Endpoint: ep, Kind: "legacy_apply", Actor: actor, Gen: req.GetGeneration(), Call: call, Return: Unknown}, floor)
	}
	return err
}

// snapshot returns copies of what was recorded.
func (r *recorder) snapshot() (ops []Op, events []Event, violations []Violation, acked map[uint64]int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	acked = make(map[uint64]int64, len(r.acked))
	for g, t := range r.acked {
		acked[g] = t
	}
	return slices.Clone(r.ops), slices.Clone(r.events), slices.Clone(r.violations), acked
}

// hasAddress reports whether an applied record serves at least one
// address (a target of weight above zero: DNS answers only those).
func hasAddress(a *pb.AppliedEndpoint) bool {
	for _, t := range a.GetTargets() {
		if t.GetWeight() > 0 {
			return true
		}
	}
	return false
}

// refusedAt reports whether an apply of generation gen or newer was
// refused for endpoint by at.
func (r *recorder) refusedAt(endpoint string, gen uint64, at int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rf := range r.refused[endpoint] {
		if rf.gen >= gen && rf.at <= at {
			return true
		}
	}
	return false
}

// refusals returns a copy of the refused applies.
func (r *recorder) refusals() map[string][]refusal {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]refusal, len(r.refused))
	for ep, rs := range r.refused {
		out[ep] = slices.Clone(rs)
	}
	return out
}
