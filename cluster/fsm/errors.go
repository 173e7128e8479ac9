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
)

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
	default:
		return "other"
	}
}
