package client

import (
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the google.rpc.ErrorInfo domain under which the cluster
// names why it rejected a request.
const ErrorDomain = "dnsplan.v1"

// Reason returns why the cluster rejected a request, in lower case:
// "fenced", "velocity", "family", "design", "frozen", "lease_held",
// "invalid", "not_found" or "not_founded"; "" when err carries no reason
// (transport errors, success). Several reasons share FAILED_PRECONDITION,
// so programs tell them apart by this, never by the message. The same
// words, in upper case, name why an endpoint of an apply was refused
// (EndpointResult.reason).
func Reason(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return strings.ToLower(info.GetReason())
		}
	}
	return ""
}
