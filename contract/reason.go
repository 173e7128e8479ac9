package contract

import (
	"strings"

	"google.golang.org/grpc/codes"
)

// Reason names why the cluster refused a request or an endpoint of an
// apply. On the wire it is the google.rpc.ErrorInfo reason of a refused
// call (domain ErrorDomain) and EndpointResult.reason of a refused
// endpoint, always in this upper-case form. Several reasons share one
// gRPC code (FAILED_PRECONDITION), so programs tell them apart by the
// reason, never by the message.
type Reason string

// The reasons. Append only: a reason, once sent, keeps its meaning.
const (
	ReasonInvalid     Reason = "INVALID"      // INVALID_ARGUMENT: the request or plan fails validation
	ReasonVelocity    Reason = "VELOCITY"     // FAILED_PRECONDITION: over the velocity limit
	ReasonLeaseHeld   Reason = "LEASE_HELD"   // FAILED_PRECONDITION: another holder has the lease
	ReasonFenced      Reason = "FENCED"       // FAILED_PRECONDITION: the token is not the lease's current one
	ReasonFrozen      Reason = "FROZEN"       // FAILED_PRECONDITION: applies and clean-up are switched off
	ReasonNotFound    Reason = "NOT_FOUND"    // NOT_FOUND: unknown or deleted generation, unknown endpoint
	ReasonFamily      Reason = "FAMILY"       // FAILED_PRECONDITION: an address family would be emptied
	ReasonDesign      Reason = "DESIGN"       // FAILED_PRECONDITION: a command of the other design
	ReasonNotFounded  Reason = "NOT_FOUNDED"  // UNAVAILABLE: the cluster's policy is not founded yet; retry
	ReasonWatchLimit  Reason = "WATCH_LIMIT"  // RESOURCE_EXHAUSTED: too many open watches
	ReasonRateLimit   Reason = "RATE_LIMIT"   // RESOURCE_EXHAUSTED: a client over its write rate
	ReasonPermission  Reason = "PERMISSION"   // PERMISSION_DENIED: the caller's role or name may not make the call
	ReasonParentMoved Reason = "PARENT_MOVED" // FAILED_PRECONDITION: the newest plan is not the expected parent
	ReasonDigest      Reason = "DIGEST"       // FAILED_PRECONDITION: the plan's digest is not the expected one
	ReasonMinHealthy  Reason = "MIN_HEALTHY"  // FAILED_PRECONDITION: an endpoint would serve fewer targets than its minimum
	ReasonHeld        Reason = "HELD"         // FAILED_PRECONDITION: the plan is held for review (freeze on doubt), never applied
)

// ParseReason reads a reason as sent, in either case ("" if s is empty).
func ParseReason(s string) Reason { return Reason(strings.ToUpper(s)) }

// Metric is the reason as a metric label or log value: lower case.
func (r Reason) Metric() string { return strings.ToLower(string(r)) }

// Wire keys.
const (
	// ErrorDomain is the google.rpc.ErrorInfo domain under which the
	// cluster names why it refused a request.
	ErrorDomain = "dnsplan.v1"
	// MetadataEndpoint is the ErrorInfo metadata key naming the endpoint
	// of a plan that caused a refusal (VELOCITY and FAMILY at submit).
	MetadataEndpoint = "endpoint"
	// LeaderTrailer is the gRPC trailer key in which a node that cannot
	// serve a call (UNAVAILABLE: not the leader, or no leader) may name the
	// gRPC address of the leader it knows. It may be absent or empty.
	LeaderTrailer = "dnsplan-leader-grpc"
)

// The lease names the roles are bound to: a planner holds PlannerLease,
// an enactor the leases named EnactorLeasePrefix + shard.
const (
	PlannerLease       = "planner"
	EnactorLeasePrefix = "enactor/"
)

// MaxMessageBytes is the largest gRPC message any dnsplan program sends or
// receives: a node's server, the nodes' connections to each other
// (forwarding to the leader) and every client. It is far above the
// largest plan validation accepts (MaxPlanBytes, 4 MiB; the
// node checks at compile time that it is at most half of this), so a
// stored plan, with the generation and time the cluster adds and a
// stream's envelope around it, fits in one message everywhere, and an
// oversize submission reaches validation and gets a clear
// INVALID_ARGUMENT rather than a transport error.
const MaxMessageBytes = 16 << 20

// Code is the gRPC status code a refusal with this reason is sent with:
// the status-code table of docs/CONTRACT.md.
func (r Reason) Code() codes.Code {
	switch r {
	case ReasonInvalid:
		return codes.InvalidArgument
	case ReasonVelocity, ReasonLeaseHeld, ReasonFenced, ReasonFrozen, ReasonFamily, ReasonDesign, ReasonParentMoved, ReasonDigest, ReasonMinHealthy, ReasonHeld:
		return codes.FailedPrecondition
	case ReasonNotFound:
		return codes.NotFound
	case ReasonNotFounded:
		// The first ready leader founds the policy at once: retry like any
		// UNAVAILABLE.
		return codes.Unavailable
	case ReasonWatchLimit, ReasonRateLimit:
		return codes.ResourceExhausted
	case ReasonPermission:
		return codes.PermissionDenied
	}
	return codes.Internal
}
