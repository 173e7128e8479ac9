package client

import (
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the google.rpc.ErrorInfo domain under which the cluster
// names why it rejected a request.
const ErrorDomain = "dnsplan.v1"

// MetadataEndpoint is the ErrorInfo metadata key naming the endpoint of a
// plan that caused a rejection (reasons "velocity" and "family" at
// submit).
const MetadataEndpoint = "endpoint"

// Reason returns why the cluster rejected a request, in lower case:
// "fenced", "velocity", "family", "design", "frozen", "lease_held",
// "invalid", "not_found" or "not_founded"; "" when err carries no reason
// (transport errors, success). Several reasons share FAILED_PRECONDITION,
// so programs tell them apart by this, never by the message. The same
// words, in upper case, name why an endpoint of an apply was refused
// (EndpointResult.reason).
func Reason(err error) string {
	return strings.ToLower(errorInfo(err).GetReason())
}

// RejectedEndpoint returns the endpoint of a plan that caused the cluster
// to reject it (a submission refused by the velocity limit or the family
// rule), or "".
func RejectedEndpoint(err error) string {
	return errorInfo(err).GetMetadata()[MetadataEndpoint]
}

// errorInfo is the cluster's ErrorInfo carried by err, or nil.
func errorInfo(err error) *errdetails.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return info
		}
	}
	return nil
}
