package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Authorization. With TLS (Config.TLS), every call has a caller: the
// identity in the client's certificate, or, for a call a node forwarded
// to the leader, the original caller the forwarding node names (trusted
// only from a node). The method table admits roles per RPC, and a
// method's bind rule ties what the request acts as (a planner id, a lease
// holder, an enactor id, the node joining) to the caller's name; an
// operator acts as anyone. Without TLS (--insecure) there is no caller
// and nothing is checked: that is what --insecure means.

var (
	// ErrUnauthenticated: a call without a verified identity. It becomes
	// UNAUTHENTICATED.
	ErrUnauthenticated = errors.New("no verified identity")
	// ErrPermission: the caller's role or name may not do this. It
	// becomes PERMISSION_DENIED.
	ErrPermission = errors.New("permission denied")
)

// callerKey is the metadata key in which a forwarding node names the
// original caller (as its identity URI).
const callerKey = "dnsplan-caller"

type callerCtx struct{}

// caller is who makes a call on ctx; ok is false without TLS. A call with
// no peer is the node's own (it registers itself, learns its DNS floor).
func (n *Node) caller(ctx context.Context) (id auth.Identity, ok bool, err error) {
	if n.cfg.TLS == nil {
		return auth.Identity{}, false, nil
	}
	if id, ok := ctx.Value(callerCtx{}).(auth.Identity); ok {
		return id, true, nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return n.cfg.TLS.Identity(), true, nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return auth.Identity{}, true, fmt.Errorf("%w: not a TLS connection", ErrUnauthenticated)
	}
	id, err = auth.PeerIdentity(ti.State)
	if err != nil {
		return auth.Identity{}, true, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if vs := md.Get(callerKey); len(vs) > 0 {
		if id.Role != auth.RoleNode {
			return auth.Identity{}, true, fmt.Errorf("%w: only a node forwards a call for another caller, not %s", ErrPermission, id)
		}
		if id, err = parseCaller(vs); err != nil {
			return auth.Identity{}, true, err
		}
	}
	return id, true, nil
}

// callerIsNode says whether the call on ctx comes from a node's
// certificate (false without TLS, where no caller is known).
func callerIsNode(ctx context.Context) bool {
	id, ok := ctx.Value(callerCtx{}).(auth.Identity)
	return ok && id.Role == auth.RoleNode
}

// parseCaller reads the original caller a node forwarded.
func parseCaller(vs []string) (auth.Identity, error) {
	if len(vs) != 1 {
		return auth.Identity{}, fmt.Errorf("%w: %d forwarded callers", ErrUnauthenticated, len(vs))
	}
	u, err := url.Parse(vs[0])
	if err != nil {
		return auth.Identity{}, fmt.Errorf("%w: forwarded caller: %v", ErrUnauthenticated, err)
	}
	id, err := auth.IdentityOfURI(u)
	if err != nil {
		return auth.Identity{}, fmt.Errorf("%w: forwarded caller: %v", ErrUnauthenticated, err)
	}
	return id, nil
}

// authorize checks id against method name's table entry: its roles, then
// its bind rule (operators act as anyone).
func authorize(name string, m method, id auth.Identity, req proto.Message) error {
	if m.roles&id.Role == 0 {
		return fmt.Errorf("%w: %s may not call %s (roles: %s)", ErrPermission, id, shortName(name), m.roles)
	}
	if m.bind != nil && id.Role != auth.RoleOperator {
		if err := m.bind(id, req); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrPermission, id, err)
		}
	}
	return nil
}

func shortName(full string) string { return full[strings.LastIndex(full, "/")+1:] }

// The bind rules: what a request acts as must be the caller.

func bindSubmit(id auth.Identity, m proto.Message) error {
	r := m.(*pb.SubmitPlanRequest)
	switch {
	case r.GetForce():
		return errors.New("only an operator may force a plan")
	case r.GetPlan().GetPlannerId() != id.Name:
		return errors.New("a planner submits plans under its own id only")
	}
	return nil
}

// leaseRequest is what acquire, renew and release have in common.
type leaseRequest interface {
	GetName() string
	GetHolder() string
}

func bindLease(id auth.Identity, m proto.Message) error {
	r := m.(leaseRequest)
	if r.GetHolder() != id.Name {
		return errors.New("a lease is held as oneself only")
	}
	switch {
	case id.Role == auth.RolePlanner && r.GetName() == contract.PlannerLease:
	case id.Role == auth.RoleEnactor && strings.HasPrefix(r.GetName(), contract.EnactorLeasePrefix):
	default:
		return fmt.Errorf("a %s may not hold this lease", id.Role)
	}
	return nil
}

func bindApply(id auth.Identity, m proto.Message) error {
	if m.(interface{ GetEnactorId() string }).GetEnactorId() != id.Name {
		return errors.New("an enactor applies as itself only")
	}
	return nil
}

func bindAddVoter(id auth.Identity, m proto.Message) error {
	if m.(*pb.AddVoterRequest).GetId() != id.Name {
		return errors.New("a node adds itself only")
	}
	return nil
}

func bindNode(id auth.Identity, m proto.Message) error {
	if m.(interface{ GetNodeId() string }).GetNodeId() != id.Name {
		return errors.New("a node records its own refusals only")
	}
	return nil
}
