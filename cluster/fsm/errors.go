package fsm

import "errors"

// Business rejections. Apply returns them (wrapped with details) in
// Result.Err; the gRPC edge maps them to status codes in one place.
var (
	// ErrInvalid: the command or plan fails validation.
	ErrInvalid = errors.New("invalid")
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

// Reason names a rejection for metrics and the audit history.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrInvalid):
		return "invalid"
	case errors.Is(err, ErrVelocity):
		return "velocity"
	case errors.Is(err, ErrLeaseHeld):
		return "lease_held"
	case errors.Is(err, ErrFenced):
		return "fenced"
	case errors.Is(err, ErrFrozen):
		return "frozen"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrFamily):
		return "family"
	case errors.Is(err, ErrDesign):
		return "design"
	case errors.Is(err, ErrNotFounded):
		return "not_founded"
	default:
		return "other"
	}
}
