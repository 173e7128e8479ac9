package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/cluster/etcdlog"
	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/contract"
)

// ErrNotLeader: this node cannot serve the request because it is not the
// (ready) leader and could not forward it. It becomes UNAVAILABLE.
var ErrNotLeader = errors.New("not the leader")

// ErrDesignMismatch: the node was started with a design (--legacy or not)
// other than the one its cluster was founded with. The node does not run.
var ErrDesignMismatch = errors.New("node design differs from the cluster's")

// raftError wraps Raft's own errors on the write path as ErrNotLeader: in
// every case the client should retry, elsewhere or later.
func raftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrRaftShutdown),
		errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	return err
}

// toStatus is the one place where errors become gRPC status codes: a
// business rejection by its reason (fsm.Reason, contract.Reason.Code),
// the node's own conditions here.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var code codes.Code
	reason := nodeReason(err)
	switch {
	case reason != "":
		code = reason.Code()
	case errors.Is(err, ErrNotLeader), errors.Is(err, ErrNotReady), errors.Is(err, etcdlog.ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, ErrUnauthenticated):
		code = codes.Unauthenticated
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	default:
		code = codes.Internal
	}
	st := status.New(code, err.Error())
	// Several rejections share FAILED_PRECONDITION; the reason tells a
	// program which one it got without parsing the message.
	if reason != "" {
		info := &errdetails.ErrorInfo{Reason: string(reason), Domain: contract.ErrorDomain}
		if ee := (*fsm.EndpointError)(nil); errors.As(err, &ee) {
			info.Metadata = map[string]string{contract.MetadataEndpoint: ee.Endpoint}
		}
		if d, derr := st.WithDetails(info); derr == nil {
			st = d
		}
	}
	return st.Err()
}

// nodeReason is the contract reason of a refusal: the state machine's
// (fsm.Reason), or the node's own at its edge.
func nodeReason(err error) contract.Reason {
	switch {
	case errors.Is(err, ErrRateLimited):
		return contract.ReasonRateLimit
	case errors.Is(err, ErrPermission):
		return contract.ReasonPermission
	}
	return fsm.Reason(err)
}

// unaryErrors applies toStatus to every handler's error and adds the
// leader hint to UNAVAILABLE answers.
func (n *Node) unaryErrors(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	err = toStatus(err)
	if status.Code(err) == codes.Unavailable {
		n.leaderHint(ctx)
	}
	return resp, err
}

func streamErrors(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return toStatus(h(srv, ss))
}
