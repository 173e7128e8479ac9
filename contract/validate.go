package contract

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// ErrInvalid is the error every validation failure wraps: the request or
// plan breaks a rule of the contract (reason INVALID, code
// INVALID_ARGUMENT). The state machine returns the same sentinel.
var ErrInvalid = errors.New("invalid")

// Limits on what a command may carry and the state may hold. They keep one
// Raft entry, one DNS answer, one snapshot and the audit history bounded.
// Every string a client sends is checked against them at the gRPC edge and
// again inside Apply; a refusal says how long the input was, never what it
// was.
const (
	MaxPlanBytes          = 4 << 20 // encoded size of one plan's planner id and endpoints
	MaxTargetsPerEndpoint = 1000
	MaxTTL                = 86400
	MaxIDLength           = 128  // target ids, planner, enactor, lease names and holders, member ids
	MaxNameLength         = 254  // a DNS name with its final dot
	MaxReasonLength       = 1024 // a freeze reason
	MaxAddressLength      = 261  // a member's Raft or gRPC address: a DNS name, a colon, a port
	MinLeaseTTL           = 50 * time.Millisecond
	MaxLeaseTTL           = time.Hour
	// MaxPlans is how many plans the state keeps before it deletes the
	// oldest ones no endpoint serves (see boundPlans).
	MaxPlans = 1000
)

// maxAddressText is more than the longest IP address text; longer input is
// refused without being quoted.
const maxAddressText = 64

// ValidatePlan checks a submitted plan: at least one endpoint; each a unique
// fully qualified name with a TTL in 1..MaxTTL and 1..MaxTargetsPerEndpoint
// targets of unique ids and valid IPv4 or IPv6 addresses, at least one of
// weight > 0; and the encoded plan within MaxPlanBytes. Names are compared
// case-insensitively. The error wraps ErrInvalid and says what is wrong.
func ValidatePlan(p *pb.Plan) error {
	if p == nil {
		return fmt.Errorf("%w: no plan", ErrInvalid)
	}
	// The limit counts what the submitter controls, not the generation and
	// time the cluster adds, so a stored plan validates like its submission.
	content := &pb.Plan{PlannerId: p.GetPlannerId(), Endpoints: p.GetEndpoints()}
	if n := proto.Size(content); n > MaxPlanBytes {
		return fmt.Errorf("%w: plan is %d bytes, limit is %d", ErrInvalid, n, MaxPlanBytes)
	}
	if len(p.GetPlannerId()) > MaxIDLength {
		return fmt.Errorf("%w: planner_id is %d bytes, limit %d", ErrInvalid, len(p.GetPlannerId()), MaxIDLength)
	}
	if len(p.GetEndpoints()) == 0 {
		return fmt.Errorf("%w: plan has no endpoints", ErrInvalid)
	}
	return validateEndpoints(p.GetEndpoints(), make(map[string]bool, len(p.GetEndpoints())))
}

// validateEndpoints checks each endpoint (ValidateEndpoint) and that no
// name appears twice, among them or in seen, which it adds them to.
func validateEndpoints(eps []*pb.EndpointPlan, seen map[string]bool) error {
	for i, ep := range eps {
		if ep == nil {
			return fmt.Errorf("%w: endpoint %d is empty", ErrInvalid, i)
		}
		if err := ValidateName(ep.GetName()); err != nil {
			return fmt.Errorf("%w: endpoint %d: %v", ErrInvalid, i, err)
		}
		name := CanonicalName(ep.GetName())
		if seen[name] {
			return fmt.Errorf("%w: endpoint %q appears twice", ErrInvalid, name)
		}
		seen[name] = true
		if err := ValidateEndpoint(ep); err != nil {
			return err
		}
	}
	return nil
}

// ValidateDelta checks a delta submission: its plan carries no endpoints
// (a member that does not know deltas then refuses it), the endpoints
// added or replaced are each valid and named once, the names removed are
// valid, named once and not also given, at least one change, within the
// plan limit. The plan it makes with its parent is checked as a whole
// when the parent is known (ValidatePlan).
func ValidateDelta(p *pb.Plan, d *pb.PlanDelta) error {
	if p == nil || d == nil {
		return fmt.Errorf("%w: no plan", ErrInvalid)
	}
	if len(p.GetEndpoints()) > 0 {
		return fmt.Errorf("%w: a delta's endpoints go in delta.endpoints, not plan.endpoints", ErrInvalid)
	}
	if n := proto.Size(d); n > MaxPlanBytes {
		return fmt.Errorf("%w: delta is %d bytes, limit is %d", ErrInvalid, n, MaxPlanBytes)
	}
	if len(p.GetPlannerId()) > MaxIDLength {
		return fmt.Errorf("%w: planner_id is %d bytes, limit %d", ErrInvalid, len(p.GetPlannerId()), MaxIDLength)
	}
	if len(d.GetEndpoints()) == 0 && len(d.GetRemove()) == 0 {
		return fmt.Errorf("%w: delta is empty", ErrInvalid)
	}
	seen := make(map[string]bool, len(d.GetEndpoints())+len(d.GetRemove()))
	if err := validateEndpoints(d.GetEndpoints(), seen); err != nil {
		return err
	}
	for _, r := range d.GetRemove() {
		if err := ValidateName(r); err != nil {
			return fmt.Errorf("%w: endpoint to remove: %v", ErrInvalid, err)
		}
		name := CanonicalName(r)
		if seen[name] {
			return fmt.Errorf("%w: endpoint %q is both given and removed, or removed twice", ErrInvalid, name)
		}
		seen[name] = true
	}
	return nil
}

// ApplyDelta is the plan a delta makes with its parent (nil: none): the
// parent's endpoints in their order, each replaced by the delta's
// endpoint of its name or left out if removed, then the delta's new
// endpoints in the delta's order; planner_id and created_at are the
// submitted plan's. The endpoints are shared, not copied. It fails if a
// removed name is not in the parent.
func ApplyDelta(parent, plan *pb.Plan, d *pb.PlanDelta) (*pb.Plan, error) {
	given := make(map[string]*pb.EndpointPlan, len(d.GetEndpoints()))
	for _, ep := range d.GetEndpoints() {
		given[CanonicalName(ep.GetName())] = ep
	}
	removed := make(map[string]bool, len(d.GetRemove()))
	for _, r := range d.GetRemove() {
		removed[CanonicalName(r)] = true
	}
	out := &pb.Plan{PlannerId: plan.GetPlannerId(), CreatedAt: plan.GetCreatedAt(),
		Endpoints: make([]*pb.EndpointPlan, 0, len(parent.GetEndpoints())+len(given))}
	for _, ep := range parent.GetEndpoints() {
		name := CanonicalName(ep.GetName())
		switch {
		case removed[name]:
			delete(removed, name)
		case given[name] != nil:
			out.Endpoints = append(out.Endpoints, given[name])
			delete(given, name)
		default:
			out.Endpoints = append(out.Endpoints, ep)
		}
	}
	for _, r := range d.GetRemove() {
		if removed[CanonicalName(r)] {
			return nil, fmt.Errorf("%w: endpoint %q to remove is not in generation %d", ErrInvalid, CanonicalName(r), parent.GetGeneration())
		}
	}
	for _, ep := range d.GetEndpoints() {
		if given[CanonicalName(ep.GetName())] != nil {
			out.Endpoints = append(out.Endpoints, ep)
		}
	}
	return out, nil
}

// MinHealthy is the fewest targets of weight > 0 endpoint ep may serve:
// the larger of its min_healthy_targets and its min_healthy_fraction of
// its targets, rounded up (0: no minimum).
func MinHealthy(ep *pb.EndpointPlan) int {
	byFraction := int(math.Ceil(ep.GetMinHealthyFraction()*float64(len(ep.GetTargets())) - 1e-9))
	return max(int(ep.GetMinHealthyTargets()), byFraction)
}

// ValidateEndpoint checks one endpoint of a plan by the rules of
// ValidatePlan (all but the plan's size and the uniqueness of names across
// endpoints). The error wraps ErrInvalid and names the endpoint.
func ValidateEndpoint(ep *pb.EndpointPlan) error {
	if err := ValidateName(ep.GetName()); err != nil {
		return fmt.Errorf("%w: endpoint: %v", ErrInvalid, err)
	}
	if err := validateEndpoint(ep); err != nil {
		return fmt.Errorf("%w: endpoint %q: %v", ErrInvalid, CanonicalName(ep.GetName()), err)
	}
	return nil
}

func validateEndpoint(ep *pb.EndpointPlan) error {
	if ep.GetTtl() < 1 || ep.GetTtl() > MaxTTL {
		return fmt.Errorf("ttl %d outside 1..%d", ep.GetTtl(), MaxTTL)
	}
	ts := ep.GetTargets()
	if len(ts) == 0 {
		return fmt.Errorf("no targets")
	}
	if len(ts) > MaxTargetsPerEndpoint {
		return fmt.Errorf("%d targets, limit is %d", len(ts), MaxTargetsPerEndpoint)
	}
	ids := make(map[string]bool, len(ts))
	var total uint64
	for i, t := range ts {
		if t == nil {
			return fmt.Errorf("target %d is empty", i)
		}
		if t.GetId() == "" || len(t.GetId()) > MaxIDLength {
			return fmt.Errorf("target %d: id must be 1..%d bytes", i, MaxIDLength)
		}
		if ids[t.GetId()] {
			return fmt.Errorf("target id %q appears twice", t.GetId())
		}
		ids[t.GetId()] = true
		if _, err := ParseAddress(t.GetAddress()); err != nil {
			return fmt.Errorf("target %q: %v", t.GetId(), err)
		}
		total += uint64(t.GetWeight())
	}
	if n := ep.GetMinHealthyTargets(); int(n) > len(ts) {
		return fmt.Errorf("min_healthy_targets %d is more than its %d targets", n, len(ts))
	}
	if f := ep.GetMinHealthyFraction(); !(f >= 0 && f <= 1) {
		return fmt.Errorf("min_healthy_fraction %v outside 0..1", f)
	}
	if total == 0 {
		return fmt.Errorf("every target has weight 0")
	}
	return nil
}

// ParseAddress parses a target address: a plain IPv4 address (an A record)
// or IPv6 address (AAAA). Zones, IPv4-mapped IPv6 and the unspecified
// address are refused, since none of them can be served.
func ParseAddress(s string) (netip.Addr, error) {
	if len(s) > maxAddressText {
		return netip.Addr{}, fmt.Errorf("address is %d bytes, too long for an IP address", len(s))
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("address %q is not an IP address", s)
	}
	switch {
	case a.Zone() != "":
		return netip.Addr{}, fmt.Errorf("address %q has a zone", s)
	case a.Is4In6():
		return netip.Addr{}, fmt.Errorf("address %q is IPv4-mapped IPv6; write the IPv4 address", s)
	case a.IsUnspecified():
		return netip.Addr{}, fmt.Errorf("address %q is unspecified", s)
	}
	return a, nil
}

// ValidateName checks that s is a fully qualified DNS name: ending in a
// dot, at most 253 characters without it, labels of 1..63 letters, digits,
// hyphens or underscores, not starting or ending with a hyphen.
func ValidateName(s string) error {
	if len(s) > MaxNameLength {
		// Checked first: the messages below quote the name.
		return fmt.Errorf("name is %d bytes, limit %d", len(s), MaxNameLength)
	}
	if !strings.HasSuffix(s, ".") || s == "." {
		return fmt.Errorf("name %q is not fully qualified (must end in a dot)", s)
	}
	body := s[:len(s)-1]
	if len(body) > 253 {
		return fmt.Errorf("name %q longer than 253 characters", s)
	}
	for _, label := range strings.Split(body, ".") {
		if len(label) == 0 || len(label) > 63 {
			return fmt.Errorf("name %q has a label of %d characters (1..63)", s, len(label))
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("name %q has a label starting or ending with a hyphen", s)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			ok := c == '-' || c == '_' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
			if !ok {
				return fmt.Errorf("name %q has character %q", s, c)
			}
		}
	}
	return nil
}

// CanonicalName is the form names are stored and compared in: lower case.
func CanonicalName(s string) string { return strings.ToLower(s) }

// ValidateLeaseRequest checks the name, holder and TTL of an acquire.
func ValidateLeaseRequest(name, holder string, ttl time.Duration) error {
	if err := ValidateID("lease name", name); err != nil {
		return err
	}
	if err := ValidateID("holder", holder); err != nil {
		return err
	}
	if ttl < MinLeaseTTL || ttl > MaxLeaseTTL {
		return fmt.Errorf("%w: lease ttl %s outside %s..%s", ErrInvalid, ttl, MinLeaseTTL, MaxLeaseTTL)
	}
	return nil
}

// ValidateApplyRequest checks the shape of an apply, not its permission.
func ValidateApplyRequest(r *pb.ApplyPlanRequest) error {
	if err := validateFenced(r.GetGeneration(), r.GetLeaseName(), r.GetEnactorId(), r.GetLeaseToken()); err != nil {
		return err
	}
	for _, e := range r.GetEndpoints() {
		if err := ValidateName(e); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	return nil
}

// validateFenced checks what an enactor's fenced request names: a
// generation, its lease and token, and itself.
func validateFenced(generation uint64, lease, enactor string, token uint64) error {
	if generation == 0 {
		return fmt.Errorf("%w: generation is required", ErrInvalid)
	}
	if err := ValidateID("lease name", lease); err != nil {
		return err
	}
	if err := ValidateID("enactor id", enactor); err != nil {
		return err
	}
	if token == 0 {
		return fmt.Errorf("%w: lease token is required", ErrInvalid)
	}
	return nil
}

// ValidateLeaseKey checks the lease name and holder of a renew or release.
func ValidateLeaseKey(name, holder string) error {
	if err := ValidateID("lease name", name); err != nil {
		return err
	}
	return ValidateID("holder", holder)
}

// ValidateFreezeRequest checks the reason an operator gives for a freeze.
func ValidateFreezeRequest(r *pb.SetFreezeRequest) error {
	if n := len(r.GetReason()); n > MaxReasonLength {
		return fmt.Errorf("%w: freeze reason is %d bytes, limit %d", ErrInvalid, n, MaxReasonLength)
	}
	return nil
}

// Bounds of a ReportDoubt: the nodes and endpoints it names.
const (
	MaxDoubtNodes     = 64
	MaxDoubtEndpoints = 16
)

// ValidateReportDoubt checks the shape of an enactor's report of doubt,
// as ValidateApplyRequest does an apply's, and bounds what it names.
func ValidateReportDoubt(r *pb.ReportDoubtRequest) error {
	switch r.GetKind() {
	case pb.DoubtKind_DOUBT_KIND_READ_BACK:
		if len(r.GetNodes()) == 0 {
			return fmt.Errorf("%w: a read-back report names the nodes that failed it", ErrInvalid)
		}
	case pb.DoubtKind_DOUBT_KIND_ROLLOUT:
	default:
		return fmt.Errorf("%w: doubt kind %d is not read_back or rollout", ErrInvalid, r.GetKind())
	}
	if err := validateFenced(r.GetGeneration(), r.GetLeaseName(), r.GetEnactorId(), r.GetLeaseToken()); err != nil {
		return err
	}
	if n := len(r.GetNodes()); n > MaxDoubtNodes {
		return fmt.Errorf("%w: %d nodes, limit %d", ErrInvalid, n, MaxDoubtNodes)
	}
	for _, id := range r.GetNodes() {
		if err := ValidateMemberID(id); err != nil {
			return err
		}
	}
	if n := len(r.GetEndpoints()); n > MaxDoubtEndpoints {
		return fmt.Errorf("%w: %d endpoints, limit %d", ErrInvalid, n, MaxDoubtEndpoints)
	}
	for _, e := range r.GetEndpoints() {
		if err := ValidateName(e); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	if n := len(r.GetDetail()); n > MaxReasonLength {
		return fmt.Errorf("%w: detail is %d bytes, limit %d", ErrInvalid, n, MaxReasonLength)
	}
	return nil
}

// ValidateMemberID checks a cluster member's id.
func ValidateMemberID(id string) error { return ValidateID("member id", id) }

// ValidateMember checks a member's id and its Raft and gRPC addresses.
func ValidateMember(id, raftAddr, grpcAddr string) error {
	if err := ValidateMemberID(id); err != nil {
		return err
	}
	if err := validateBounded("raft address", raftAddr, MaxAddressLength); err != nil {
		return err
	}
	return validateBounded("grpc address", grpcAddr, MaxAddressLength)
}

// ValidateID checks an identifier (lease name, holder, enactor or member id):
// 1..MaxIDLength bytes. what names it in the error, which never quotes it.
func ValidateID(what, s string) error { return validateBounded(what, s, MaxIDLength) }

// validateBounded checks that s is 1..limit bytes, without quoting it.
func validateBounded(what, s string, limit int) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: %s is required", ErrInvalid, what)
	case len(s) > limit:
		return fmt.Errorf("%w: %s is %d bytes, limit %d", ErrInvalid, what, len(s), limit)
	}
	return nil
}
