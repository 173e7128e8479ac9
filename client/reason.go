package client

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/contract"
)

// Reason returns why the cluster refused a request (contract.Reason), or
// "" when err carries no reason (transport errors, success). Several
// reasons share FAILED_PRECONDITION, so programs tell them apart by this,
// never by the message.
func Reason(err error) contract.Reason {
	return contract.ParseReason(errorInfo(err).GetReason())
}

// RejectedEndpoint returns the endpoint of a plan that caused the cluster
// to reject it (a submission refused by the velocity limit or the family
// rule), or "".
func RejectedEndpoint(err error) string {
	return errorInfo(err).GetMetadata()[contract.MetadataEndpoint]
}

// errorInfo is the cluster's ErrorInfo carried by err, or nil.
func errorInfo(err error) *errdetails.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == contract.ErrorDomain {
			return info
		}
	}
	return nil
}
