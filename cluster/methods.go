package cluster

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// The method table: every RPC of the API with how it is served, the
// validation of its request, and the roles that may call it. One
// interceptor (route) applies it, so a handler holds only what the method
// does on the node that serves it: no handler forwards, validates or
// checks leadership by itself. Adding an RPC is its proto, its handler
// and one entry here (cluster/DESIGN.md, "Adding an RPC").

// access is how a method is served.
type access uint8

const (
	// accessWrite needs the leader: served there, and passed on once to
	// the leader from any other node.
	accessWrite access = iota + 1
	// accessRead is linearizable, on the leader (passed on likewise), or
	// from this node's replica when the request sets stale.
	accessRead
	// accessLocal is this node's own answer (what it sees).
	accessLocal
	// accessStream is a stream served by this node from its replica.
	accessStream
)

// method is one entry of the table.
type method struct {
	access access
	// roles are the roles that may call the method (auth.Role, from the
	// caller's certificate); declared here, enforced once the API runs
	// with mutual TLS.
	roles auth.Role
	// validate checks the request before anything else (nil: nothing to
	// check). For a command, it is the command table's own validation.
	validate func(proto.Message) error
	// bind ties what the request acts as to the caller (authz.go; nil:
	// the role is enough). Operators are not bound.
	bind func(auth.Identity, proto.Message) error
	// response is the message the method answers with, resolved from the
	// method's descriptor: what a call passed on to the leader decodes.
	response protoreflect.MessageType
}

// Everyone who may read may call a read; operators may do everything.
const readers = auth.RoleReader | auth.RolePlanner | auth.RoleEnactor | auth.RoleOperator | auth.RoleNode

var methods = resolve(map[string]method{
	pb.PlanService_SubmitPlan_FullMethodName:   {access: accessWrite, roles: auth.RolePlanner | auth.RoleOperator, validate: validateSubmit, bind: bindSubmit},
	pb.PlanService_GetPlan_FullMethodName:      {access: accessRead, roles: readers},
	pb.PlanService_ListPlans_FullMethodName:    {access: accessRead, roles: readers},
	pb.PlanService_WatchPlans_FullMethodName:   {access: accessStream, roles: readers},
	pb.PlanService_DiffPlans_FullMethodName:    {access: accessRead, roles: readers, validate: validateDiff},
	pb.PlanService_RollbackPlan_FullMethodName: {access: accessWrite, roles: auth.RoleOperator, validate: fsm.Validate},

	pb.LeaseService_AcquireLease_FullMethodName: {access: accessWrite, roles: auth.RolePlanner | auth.RoleEnactor | auth.RoleOperator, validate: fsm.Validate, bind: bindLease},
	pb.LeaseService_RenewLease_FullMethodName:   {access: accessWrite, roles: auth.RolePlanner | auth.RoleEnactor | auth.RoleOperator, validate: fsm.Validate, bind: bindLease},
	pb.LeaseService_ReleaseLease_FullMethodName: {access: accessWrite, roles: auth.RolePlanner | auth.RoleEnactor | auth.RoleOperator, validate: fsm.Validate, bind: bindLease},
	pb.LeaseService_ListLeases_FullMethodName:   {access: accessRead, roles: readers},

	pb.EnactService_ApplyPlan_FullMethodName:    {access: accessWrite, roles: auth.RoleEnactor | auth.RoleOperator, validate: fsm.Validate, bind: bindApply},
	pb.EnactService_CleanupPlans_FullMethodName: {access: accessWrite, roles: auth.RoleEnactor | auth.RoleOperator, validate: fsm.Validate},
	pb.EnactService_GetApplied_FullMethodName:   {access: accessRead, roles: readers, validate: validateGetApplied},
	pb.EnactService_ListApplied_FullMethodName:  {access: accessRead, roles: readers},
	pb.EnactService_WatchApplied_FullMethodName: {access: accessStream, roles: readers},
	pb.EnactService_ListHistory_FullMethodName:  {access: accessRead, roles: readers, validate: validateListHistory},
	pb.EnactService_ReportDoubt_FullMethodName:  {access: accessWrite, roles: auth.RoleEnactor | auth.RoleOperator, validate: fsm.Validate, bind: bindApply},

	pb.ClusterService_Status_FullMethodName:             {access: accessLocal, roles: readers},
	pb.ClusterService_AddVoter_FullMethodName:           {access: accessWrite, roles: auth.RoleOperator | auth.RoleNode, validate: validateAddVoter, bind: bindAddVoter},
	pb.ClusterService_RemoveServer_FullMethodName:       {access: accessWrite, roles: auth.RoleOperator, validate: validateRemoveServer},
	pb.ClusterService_TransferLeadership_FullMethodName: {access: accessWrite, roles: auth.RoleOperator, validate: validateTransfer},
	pb.ClusterService_SetFreeze_FullMethodName:          {access: accessWrite, roles: auth.RoleOperator, validate: fsm.Validate},
	pb.ClusterService_GetConfig_FullMethodName:          {access: accessRead, roles: readers},
	pb.ClusterService_SetConfig_FullMethodName:          {access: accessWrite, roles: auth.RoleOperator, validate: fsm.Validate},
	pb.ClusterService_ReadIndex_FullMethodName:          {access: accessRead, roles: readers},
	pb.ClusterService_RecordRefusals_FullMethodName:     {access: accessWrite, roles: auth.RoleNode, validate: fsm.Validate, bind: bindNode},

	// LEGACY (legacy.go): served only by nodes started with --legacy.
	pb.LegacyService_LegacyApply_FullMethodName:   {access: accessWrite, roles: auth.RoleEnactor | auth.RoleOperator, validate: fsm.Validate, bind: bindApply},
	pb.LegacyService_LegacyCleanup_FullMethodName: {access: accessWrite, roles: auth.RoleEnactor | auth.RoleOperator, validate: fsm.Validate},
})

// MethodRoles lists every RPC of the API with the roles that may call it:
// for the tests that hold the API to its table.
func MethodRoles() map[string]auth.Role {
	out := make(map[string]auth.Role, len(methods))
	for name, m := range methods {
		out[name] = m.roles
	}
	return out
}

// resolve fills in each method's response type from its descriptor; a
// name that is no method of the API is a programming error.
func resolve(ms map[string]method) map[string]method {
	for name, m := range ms {
		full := protoreflect.FullName(strings.ReplaceAll(strings.TrimPrefix(name, "/"), "/", "."))
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(full)
		md, ok := d.(protoreflect.MethodDescriptor)
		if err != nil || !ok {
			panic(fmt.Sprintf("cluster: method table: %s is not a method: %v", name, err))
		}
		mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
		if err != nil {
			panic(fmt.Sprintf("cluster: method table: %s answers %s: %v", name, md.Output().FullName(), err))
		}
		m.response = mt
		ms[name] = m
	}
	return ms
}

// errNoMethod: a method the server registers but the table does not list.
// Refused, so a handler cannot be reached without the table's rules.
var errNoMethod = status.Error(codes.Unimplemented, "method is not in the method table")

// apiPrefix starts the full name of every method of the API; the method
// table covers exactly those. The server's other services, gRPC health
// and reflection, answer anyone the transport admitted, and change
// nothing.
const apiPrefix = "/dnsplan.v1."

// route is the unary interceptor that applies the method table.
func (n *Node) route(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if !strings.HasPrefix(info.FullMethod, apiPrefix) {
		return h(ctx, req)
	}
	msg, ok := req.(proto.Message)
	if !ok {
		return nil, errNoMethod
	}
	return n.serve(ctx, info.FullMethod, msg, func(ctx context.Context) (any, error) { return h(ctx, msg) })
}

// routeStream is the stream interceptor: a stream must be in the table,
// and its caller of a role the table admits.
func (n *Node) routeStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if !strings.HasPrefix(info.FullMethod, apiPrefix) {
		return h(srv, ss)
	}
	m, ok := methods[info.FullMethod]
	if !ok || m.access != accessStream {
		return errNoMethod
	}
	id, secured, err := n.caller(ss.Context())
	if err != nil {
		return err
	}
	if secured {
		if err := authorize(info.FullMethod, m, id, nil); err != nil {
			n.refuse(id, true, info.FullMethod, err)
			return err
		}
		ss = callerStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), callerCtx{}, id)}
	}
	return h(srv, ss)
}

// serve runs one call of the named method by its table entry: validated,
// then here (local) or on the leader. Calls from inside the node (a node
// registering itself, the DNS floor) come through here too.
func (n *Node) serve(ctx context.Context, name string, req proto.Message, local func(context.Context) (any, error)) (any, error) {
	m, err := admit(name, req)
	if err != nil {
		return nil, err
	}
	id, secured, err := n.caller(ctx)
	if err != nil {
		return nil, err
	}
	if secured {
		if err := authorize(name, m, id, req); err != nil {
			n.refuse(id, true, name, err)
			return nil, err
		}
		ctx = context.WithValue(ctx, callerCtx{}, id)
	}
	if m.access == accessWrite && n.limitsWrites(ctx, secured) && !n.writes.Allow(clientKey(ctx)) {
		err := fmt.Errorf("%w: client %s is over %g writes a second (burst %d) on node %s", ErrRateLimited, clientKey(ctx), n.writes.Rate(), n.writes.Burst(), n.cfg.ID)
		n.refuse(id, secured, name, err)
		return nil, err
	}
	if n.etcd != nil {
		// The etcd store has no leader: every node proposes, and a
		// linearizable read waits for the replica to reach the log's head.
		if m.access == accessRead && !isStale(req) {
			if err := n.etcdBarrier(ctx); err != nil {
				return nil, err
			}
		}
		return local(ctx)
	}
	switch m.access {
	case accessLocal:
		return local(ctx)
	case accessRead:
		if isStale(req) {
			return local(ctx)
		}
		if n.IsLeader() {
			if err := n.verifyLeader(); err != nil {
				return nil, err
			}
			return local(ctx)
		}
	case accessWrite:
		if n.IsLeader() {
			return local(ctx)
		}
	}
	return n.forward(ctx, name, m, req)
}

// isStale says whether a read asks to be served from the replica as it is.
func isStale(req proto.Message) bool {
	s, ok := req.(interface{ GetStale() bool })
	return ok && s.GetStale()
}

// admit finds a unary method's table entry and validates req by it.
func admit(name string, req proto.Message) (method, error) {
	m, ok := methods[name]
	if !ok || m.access == accessStream {
		return method{}, errNoMethod
	}
	if m.validate != nil {
		if err := m.validate(req); err != nil {
			return method{}, err
		}
	}
	return m, nil
}

// limitsWrites says whether a write on ctx counts against its client's
// rate here: a client's call, not the node's own; and, without TLS, not a
// call another node forwarded (its client was counted there, and here it
// would share the forwarding node's address with every other client).
// With TLS the leader counts forwarded writes too, by their original
// caller, so a client spreading its writes over every node still meets
// its rate once.
func (n *Node) limitsWrites(ctx context.Context, secured bool) bool {
	if _, ok := peer.FromContext(ctx); !ok {
		return false
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(forwardedKey)) > 0 {
		return secured
	}
	return true
}

// callerStream is a stream whose context carries its caller.
type callerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s callerStream) Context() context.Context { return s.ctx }

// forwardedKey marks a request a follower forwarded, so that the receiver
// never forwards it again (no loops while leadership moves).
const forwardedKey = "dnsplan-forwarded-by"

// forward passes a call once to the leader's gRPC API.
func (n *Node) forward(ctx context.Context, name string, m method, req proto.Message) (any, error) {
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(forwardedKey)) > 0 {
		return nil, n.notLeader()
	}
	_, addr := n.leader()
	if addr == "" {
		return nil, n.notLeader()
	}
	conn, err := n.conn(addr)
	if err != nil {
		return nil, n.notLeader()
	}
	out := metadata.AppendToOutgoingContext(ctx, forwardedKey, n.cfg.ID)
	if id, ok := ctx.Value(callerCtx{}).(auth.Identity); ok {
		out = metadata.AppendToOutgoingContext(out, callerKey, id.URI().String())
	}
	resp := m.response.New().Interface()
	if err := conn.Invoke(out, name, req, resp); err != nil {
		n.metrics.forwarded.WithLabelValues("error").Inc()
		return nil, err
	}
	n.metrics.forwarded.WithLabelValues("ok").Inc()
	return resp, nil
}

// call is serve for a caller inside the node, typed.
func call[Resp proto.Message](ctx context.Context, n *Node, name string, req proto.Message, local func(context.Context) (Resp, error)) (Resp, error) {
	resp, err := n.serve(ctx, name, req, func(ctx context.Context) (any, error) { return local(ctx) })
	r, _ := resp.(Resp)
	return r, err
}

// Edge-only validations: requests that are not themselves a command.

func validateSubmit(m proto.Message) error {
	req := m.(*pb.SubmitPlanRequest)
	if err := fsm.ValidateSubmitted(req); err != nil {
		return err
	}
	if req.GetExpectedDigest() != "" {
		if err := contract.ValidateDigest(req.GetExpectedDigest()); err != nil {
			return err
		}
	}
	if req.GetLeaseName() != "" {
		return contract.ValidateLeaseKey(req.GetLeaseName(), req.GetPlan().GetPlannerId())
	}
	return nil
}

func validateDiff(m proto.Message) error {
	req := m.(*pb.DiffPlansRequest)
	if (req.GetToGeneration() == 0) == (req.GetPlan() == nil) {
		return fmt.Errorf("%w: give to_generation or plan, one of them", fsm.ErrInvalid)
	}
	if req.GetPlan() != nil {
		return contract.ValidatePlan(req.GetPlan())
	}
	return nil
}

func validateListHistory(m proto.Message) error {
	req := m.(*pb.ListHistoryRequest)
	if req.GetEndpoint() != "" {
		if err := contract.ValidateName(req.GetEndpoint()); err != nil {
			return fmt.Errorf("%w: %v", fsm.ErrInvalid, err)
		}
	}
	if req.GetSince() != nil {
		if err := req.GetSince().CheckValid(); err != nil {
			return fmt.Errorf("%w: since: %v", fsm.ErrInvalid, err)
		}
	}
	if w := req.GetWithin(); w != nil && (w.CheckValid() != nil || w.AsDuration() < 0) {
		return fmt.Errorf("%w: within must be a duration of at least 0", fsm.ErrInvalid)
	}
	return nil
}

func validateGetApplied(m proto.Message) error {
	if err := contract.ValidateName(m.(*pb.GetAppliedRequest).GetEndpoint()); err != nil {
		return fmt.Errorf("%w: %v", fsm.ErrInvalid, err)
	}
	return nil
}

func validateAddVoter(m proto.Message) error {
	req := m.(*pb.AddVoterRequest)
	return contract.ValidateMember(req.GetId(), req.GetRaftAddr(), req.GetGrpcAddr())
}

func validateRemoveServer(m proto.Message) error {
	return contract.ValidateMemberID(m.(*pb.RemoveServerRequest).GetId())
}

func validateTransfer(m proto.Message) error {
	if id := m.(*pb.TransferLeadershipRequest).GetId(); id != "" {
		return contract.ValidateMemberID(id)
	}
	return nil
}
