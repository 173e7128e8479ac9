package fsm

import (
	"errors"

	"github.com/dnsplan/dnsplan/contract"
)

// Business rejections. Apply returns them (wrapped with details) in
// Result.Err; the gRPC edge maps them to status codes in one place.
var (
	// ErrInvalid: the command or plan fails validation (the contract's
	// sentinel: contract.Validate* return it too).
	ErrInvalid = contract.ErrInvalid
	// ErrVelocity: the plan removes more capacity than the limit allows.
	ErrVelocity = errors.New("velocity limit exceeded")
	// ErrLeaseHeld: the lease is held by another holder and not expired.
	ErrLeaseHeld = errors.New("lease held by another holder")
	// ErrFenced: the lease token is not the current one of an unexpired
	// lease held by the caller.
	ErrFenced = errors.New("fenced")
	// ErrFrozen: applies and clean-up are switched off by an operator.
	ErrFrozen = errors.New("frozen")
	// ErrNotFound: unknown or deleted generation, unknown endpoint.
	ErrNotFound = errors.New("not found")
	// ErrFamily: the plan would stop an endpoint serving an address family
	// (A or AAAA) it serves now.
	ErrFamily = errors.New("address family would be emptied")
	// ErrDesign: the command belongs to a design (fixed or legacy) other
	// than the one the cluster was founded with.
	ErrDesign = errors.New("refused by the cluster's design")
	// ErrNotFounded: the cluster's policy is not founded yet; the first
	// ready leader founds it, so a retry succeeds.
	ErrNotFounded = errors.New("cluster policy not founded yet")
	// ErrParentMoved: the newest plan is not the parent the submission
	// expected.
	ErrParentMoved = errors.New("the newest plan is not the expected parent")
	// ErrDigest: the plan's digest is not the one the submission expected.
	ErrDigest = errors.New("plan digest differs from the expected one")
	// ErrMinHealthy: an endpoint would serve fewer targets than its
	// minimum healthy.
	ErrMinHealthy = errors.New("below the endpoint's minimum healthy")
	// ErrHeld: the plan was stored for review when the cluster froze on
	// doubt; it is never applied.
	ErrHeld = errors.New("plan held for review")
)

// EndpointError is a rejection caused by one endpoint of a plan (the
// per-endpoint rules at submit: velocity, families). It names the
// endpoint, which the gRPC edge passes on in the ErrorInfo metadata
// (client.RejectedEndpoint), so a program can act on that endpoint
// without parsing the message.
type EndpointError struct {
	Endpoint string
	Err      error
}

func (e *EndpointError) Error() string { return e.Err.Error() }
func (e *EndpointError) Unwrap() error { return e.Err }

// rejections names each business rejection on the wire; its gRPC code
// follows from the reason (contract.Reason.Code).
var rejections = []struct {
	err    error
	reason contract.Reason
}{
	{ErrInvalid, contract.ReasonInvalid},
	{ErrVelocity, contract.ReasonVelocity},
	{ErrLeaseHeld, contract.ReasonLeaseHeld},
	{ErrFenced, contract.ReasonFenced},
	{ErrFrozen, contract.ReasonFrozen},
	{ErrNotFound, contract.ReasonNotFound},
	{ErrFamily, contract.ReasonFamily},
	{ErrDesign, contract.ReasonDesign},
	{ErrNotFounded, contract.ReasonNotFounded},
	{ErrParentMoved, contract.ReasonParentMoved},
	{ErrDigest, contract.ReasonDigest},
	{ErrMinHealthy, contract.ReasonMinHealthy},
	{ErrHeld, contract.ReasonHeld},
}

// Reason names a rejection for the wire, metrics and the audit history:
// "" for nil and for an error that is none of the package's rejections.
func Reason(err error) contract.Reason {
	if err == nil {
		return ""
	}
	for _, r := range rejections {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return ""
}
