package client

import "google.golang.org/grpc"

// MaxMessageBytes is the largest gRPC message any dnsplan program sends or
// receives: a node's server, the nodes' connections to each other
// (forwarding to the leader) and this client all use it. It is far above
// the largest plan validation accepts (cluster/fsm.MaxPlanBytes, 4 MiB;
// the node checks at compile time that it is at most half of this), so a
// stored plan, with the generation and time the cluster adds and a
// stream's envelope around it, fits in one message everywhere, and an
// oversize submission reaches validation and gets a clear
// INVALID_ARGUMENT rather than a transport error.
const MaxMessageBytes = 16 << 20

// MessageLimits is the dial option that applies MaxMessageBytes to every
// call made on a connection. Without it gRPC receives at most 4 MiB, less
// than a plan at the validation limit takes once stored.
func MessageLimits() grpc.DialOption {
	return grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes))
}
