package client

import (
	"google.golang.org/grpc"

	"github.com/dnsplan/dnsplan/contract"
)

// MessageLimits is the dial option that applies contract.MaxMessageBytes to every
// call made on a connection. Without it gRPC receives at most 4 MiB, less
// than a plan at the validation limit takes once stored.
func MessageLimits() grpc.DialOption {
	return grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(contract.MaxMessageBytes), grpc.MaxCallSendMsgSize(contract.MaxMessageBytes))
}
