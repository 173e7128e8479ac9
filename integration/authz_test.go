package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/cluster/clustertest"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// callAs calls method name on addr with req over mutual TLS as the holder
// of l's certificate, with extra outgoing metadata, and returns the
// call's code (a stream: the code of its first receive).
func callAs(t *testing.T, addr string, l *auth.Loader, name string, req proto.Message, md ...string) codes.Code {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(l.ClientConfig(""))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	full := protoreflect.FullName(strings.ReplaceAll(strings.TrimPrefix(name, "/"), "/", "."))
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(full)
	if err != nil {
		t.Fatal(err)
	}
	md2 := d.(protoreflect.MethodDescriptor)
	wait := 3 * time.Second
	if md2.IsStreamingServer() {
		wait = time.Second // an admitted watch waits for news
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	if md2.IsStreamingServer() {
		s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, name)
		if err == nil {
			if err = s.SendMsg(req); err == nil {
				_ = s.CloseSend()
				mt, _ := protoregistry.GlobalTypes.FindMessageByName(md2.Output().FullName())
				err = s.RecvMsg(mt.New().Interface())
			}
		}
		return status.Code(err)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md2.Output().FullName())
	if err != nil {
		t.Fatal(err)
	}
	return status.Code(conn.Invoke(ctx, name, req, mt.New().Interface()))
}

// Each role against each RPC: a request each role could make, acting as
// itself, is refused PERMISSION_DENIED exactly when the method table does
// not admit the role. Every RPC of the table needs a sample here, so a
// new RPC without one (or without roles) fails the test.
func TestRolesPerRPC(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{TLS: true})
	lead := c.Leader()
	ids := map[auth.Role]string{auth.RoleReader: "r1", auth.RolePlanner: "planner1", auth.RoleEnactor: "az-a", auth.RoleOperator: "ops", auth.RoleNode: c.IDs[lead]}
	loaders := map[auth.Role]*auth.Loader{}
	for role, name := range ids {
		loaders[role] = c.Certificate(role, name)
	}
	plan := func(planner string) *pb.Plan {
		return &pb.Plan{PlannerId: planner, Endpoints: []*pb.EndpointPlan{{Name: endpoint, Ttl: 30,
			Targets: []*pb.Target{{Id: "lb-1", Address: "192.0.2.1", Weight: 1}}}}}
	}
	// The lease each role may hold, as itself.
	lease := func(role auth.Role) string {
		if role == auth.RolePlanner {
			return "planner"
		}
		return "enactor/0"
	}
	samples := map[string]func(role auth.Role, name string) proto.Message{
		pb.PlanService_SubmitPlan_FullMethodName: func(_ auth.Role, name string) proto.Message {
			return &pb.SubmitPlanRequest{Plan: plan(name)}
		},
		pb.PlanService_GetPlan_FullMethodName:   func(auth.Role, string) proto.Message { return &pb.GetPlanRequest{Newest: true} },
		pb.PlanService_ListPlans_FullMethodName: func(auth.Role, string) proto.Message { return &pb.ListPlansRequest{} },
		pb.PlanService_DiffPlans_FullMethodName: func(_ auth.Role, name string) proto.Message {
			return &pb.DiffPlansRequest{Plan: plan(name)}
		},
		pb.PlanService_RollbackPlan_FullMethodName: func(auth.Role, string) proto.Message {
			return &pb.RollbackPlanRequest{Reason: "drill"}
		},
		pb.PlanService_WatchPlans_FullMethodName: func(auth.Role, string) proto.Message { return &pb.WatchPlansRequest{FromGeneration: 1} },
		pb.LeaseService_AcquireLease_FullMethodName: func(role auth.Role, name string) proto.Message {
			return &pb.AcquireLeaseRequest{Name: lease(role), Holder: name, Ttl: durationpb.New(time.Second)}
		},
		pb.LeaseService_RenewLease_FullMethodName: func(role auth.Role, name string) proto.Message {
			return &pb.RenewLeaseRequest{Name: lease(role), Holder: name, Token: 1}
		},
		pb.LeaseService_ReleaseLease_FullMethodName: func(role auth.Role, name string) proto.Message {
			return &pb.ReleaseLeaseRequest{Name: lease(role), Holder: name, Token: 1}
		},
		pb.LeaseService_ListLeases_FullMethodName: func(auth.Role, string) proto.Message { return &pb.ListLeasesRequest{} },
		pb.EnactService_ApplyPlan_FullMethodName: func(_ auth.Role, name string) proto.Message {
			return &pb.ApplyPlanRequest{Generation: 1, LeaseName: "enactor/0", LeaseToken: 1, EnactorId: name}
		},
		pb.EnactService_CleanupPlans_FullMethodName: func(auth.Role, string) proto.Message { return &pb.CleanupPlansRequest{KeepLast: 100} },
		pb.EnactService_ReportDoubt_FullMethodName: func(_ auth.Role, name string) proto.Message {
			return &pb.ReportDoubtRequest{Kind: pb.DoubtKind_DOUBT_KIND_READ_BACK, Generation: 1, LeaseName: "enactor/0", LeaseToken: 1, EnactorId: name, Nodes: []string{"n9"}}
		},
		pb.EnactService_GetApplied_FullMethodName:   func(auth.Role, string) proto.Message { return &pb.GetAppliedRequest{Endpoint: endpoint} },
		pb.EnactService_ListApplied_FullMethodName:  func(auth.Role, string) proto.Message { return &pb.ListAppliedRequest{} },
		pb.EnactService_WatchApplied_FullMethodName: func(auth.Role, string) proto.Message { return &pb.WatchAppliedRequest{} },
		pb.EnactService_ListHistory_FullMethodName:  func(auth.Role, string) proto.Message { return &pb.ListHistoryRequest{Limit: 1} },
		pb.ClusterService_Status_FullMethodName:     func(auth.Role, string) proto.Message { return &pb.StatusRequest{} },
		pb.ClusterService_AddVoter_FullMethodName: func(auth.Role, string) proto.Message {
			// The leader confirming itself: allowed, it changes nothing.
			return &pb.AddVoterRequest{Id: c.IDs[lead], RaftAddr: c.RaftAddrs[lead], GrpcAddr: c.GRPCAddrs[lead]}
		},
		pb.ClusterService_RemoveServer_FullMethodName:       func(auth.Role, string) proto.Message { return &pb.RemoveServerRequest{Id: "nobody"} },
		pb.ClusterService_TransferLeadership_FullMethodName: func(auth.Role, string) proto.Message { return &pb.TransferLeadershipRequest{Id: "nobody"} },
		pb.ClusterService_SetFreeze_FullMethodName:          func(auth.Role, string) proto.Message { return &pb.SetFreezeRequest{Frozen: false} },
		pb.ClusterService_GetConfig_FullMethodName:          func(auth.Role, string) proto.Message { return &pb.GetConfigRequest{} },
		pb.ClusterService_SetConfig_FullMethodName: func(auth.Role, string) proto.Message {
			w := durationpb.New(time.Minute)
			return &pb.SetConfigRequest{VelocityWindow: w}
		},
		pb.ClusterService_ReadIndex_FullMethodName: func(auth.Role, string) proto.Message { return &pb.ReadIndexRequest{} },
		pb.ClusterService_RecordRefusals_FullMethodName: func(_ auth.Role, name string) proto.Message {
			return &pb.RecordRefusalsRequest{NodeId: name, Refusals: []*pb.Refusal{{Caller: "reader/r9", Method: "SetFreeze", ReasonCode: "PERMISSION", Count: 1}}}
		},
	}
	admits := cluster.MethodRoles()
	for name, roles := range admits {
		if strings.HasPrefix(name, "/dnsplan.v1.LegacyService/") {
			continue // served only by legacy nodes; the same interceptor
		}
		sample, ok := samples[name]
		if !ok {
			t.Errorf("%s: no sample request; add one", name)
			continue
		}
		if roles == 0 {
			t.Errorf("%s admits no role", name)
		}
		for role, name2 := range ids {
			code := callAs(t, c.GRPCAddrs[lead], loaders[role], name, sample(role, name2))
			if denied := code == codes.PermissionDenied; denied != (roles&role == 0) {
				t.Errorf("%s as %s: %v; the table admits %s", shortMethod(name), role, code, roles)
			}
		}
	}
}

// What a request acts as is bound to the caller's name, through a
// follower too: the leader authorizes a forwarded call as its original
// caller, and only a node may name another caller.
func TestIdentityIsBound(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{TLS: true})
	lead := c.Leader()
	f := (lead + 1) % 3
	azA := c.Certificate(auth.RoleEnactor, "az-a")
	planner := c.Certificate(auth.RolePlanner, "planner1")
	ops := c.Certificate(auth.RoleOperator, "ops")
	submit := func(planner string, force bool) *pb.SubmitPlanRequest {
		return &pb.SubmitPlanRequest{Force: force, Plan: &pb.Plan{PlannerId: planner, Endpoints: []*pb.EndpointPlan{{Name: endpoint, Ttl: 30,
			Targets: []*pb.Target{{Id: "lb-1", Address: "192.0.2.1", Weight: 1}}}}}}
	}
	for _, tc := range []struct {
		what string
		as   *auth.Loader
		name string
		req  proto.Message
		md   []string
		want codes.Code
	}{
		{"an enactor acquires as itself", azA, pb.LeaseService_AcquireLease_FullMethodName,
			&pb.AcquireLeaseRequest{Name: "enactor/0", Holder: "az-a", Ttl: durationpb.New(time.Minute)}, nil, codes.OK},
		{"an enactor acquires as another", azA, pb.LeaseService_AcquireLease_FullMethodName,
			&pb.AcquireLeaseRequest{Name: "enactor/1", Holder: "az-b", Ttl: durationpb.New(time.Minute)}, nil, codes.PermissionDenied},
		{"an enactor renews as another", azA, pb.LeaseService_RenewLease_FullMethodName,
			&pb.RenewLeaseRequest{Name: "enactor/0", Holder: "az-b", Token: 1}, nil, codes.PermissionDenied},
		{"an enactor reports doubt as another", azA, pb.EnactService_ReportDoubt_FullMethodName,
			&pb.ReportDoubtRequest{Kind: pb.DoubtKind_DOUBT_KIND_ROLLOUT, Generation: 1, LeaseName: "enactor/0", LeaseToken: 1, EnactorId: "az-b"}, nil, codes.PermissionDenied},
		{"an enactor takes the planner's lease", azA, pb.LeaseService_AcquireLease_FullMethodName,
			&pb.AcquireLeaseRequest{Name: "planner", Holder: "az-a", Ttl: durationpb.New(time.Minute)}, nil, codes.PermissionDenied},
		{"an enactor applies as another", azA, pb.EnactService_ApplyPlan_FullMethodName,
			&pb.ApplyPlanRequest{Generation: 1, LeaseName: "enactor/0", LeaseToken: 1, EnactorId: "az-b"}, nil, codes.PermissionDenied},
		{"a planner submits as itself", planner, pb.PlanService_SubmitPlan_FullMethodName, submit("planner1", false), nil, codes.OK},
		{"a planner submits as another", planner, pb.PlanService_SubmitPlan_FullMethodName, submit("planner2", false), nil, codes.PermissionDenied},
		{"a planner forces", planner, pb.PlanService_SubmitPlan_FullMethodName, submit("planner1", true), nil, codes.PermissionDenied},
		{"an operator forces, as anyone", ops, pb.PlanService_SubmitPlan_FullMethodName, submit("planner9", true), nil, codes.OK},
		{"an enactor names another caller", azA, pb.PlanService_SubmitPlan_FullMethodName, submit("x", true),
			[]string{"dnsplan-caller", "dnsplan://operator/ops"}, codes.PermissionDenied},
	} {
		for _, node := range []int{lead, f} {
			got := callAs(t, c.GRPCAddrs[node], tc.as, tc.name, tc.req, tc.md...)
			if got != tc.want {
				where := "the leader"
				if node != lead {
					where = "a follower"
				}
				t.Errorf("%s, through %s: %v, want %v", tc.what, where, got, tc.want)
			}
		}
	}
}

// The audit history names the caller of every accepted write, a
// forwarded one by its original caller, and every refused call with its
// caller, method and count.
func TestAuditNamesCallers(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{TLS: true, Tune: func(cfg *cluster.Config) { cfg.RecordRefusalsEvery = 200 * time.Millisecond }})
	lead := c.Leader()
	f := (lead + 1) % 3
	planner := c.Certificate(auth.RolePlanner, "planner1")
	reader := c.Certificate(auth.RoleReader, "dash")
	ops := c.Certificate(auth.RoleOperator, "ops")
	submit := &pb.SubmitPlanRequest{Plan: &pb.Plan{PlannerId: "planner1", Endpoints: []*pb.EndpointPlan{{Name: endpoint, Ttl: 30,
		Targets: []*pb.Target{{Id: "lb-1", Address: "192.0.2.1", Weight: 1}}}}}}
	if code := callAs(t, c.GRPCAddrs[f], planner, pb.PlanService_SubmitPlan_FullMethodName, submit); code != codes.OK {
		t.Fatalf("submit through a follower: %v", code)
	}
	for range 3 {
		if code := callAs(t, c.GRPCAddrs[f], reader, pb.ClusterService_SetFreeze_FullMethodName, &pb.SetFreezeRequest{Frozen: true}); code != codes.PermissionDenied {
			t.Fatalf("a reader freezes: %v", code)
		}
	}
	if code := callAs(t, c.GRPCAddrs[lead], reader, pb.PlanService_SubmitPlan_FullMethodName, submit); code != codes.PermissionDenied {
		t.Fatalf("a reader submits: %v", code)
	}
	conn, err := grpc.NewClient(c.GRPCAddrs[lead], grpc.WithTransportCredentials(credentials.NewTLS(ops.ClientConfig(""))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := pb.NewEnactServiceClient(conn)
	type refusal struct {
		caller, method, code string
		count                uint64
	}
	want := map[refusal]bool{{"reader/dash", "SetFreeze", "PERMISSION", 3}: true, {"reader/dash", "SubmitPlan", "PERMISSION", 1}: true}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		h, err := api.ListHistory(ctx, &pb.ListHistoryRequest{})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		var submitCaller string
		got := map[refusal]bool{}
		for _, ev := range h.Events {
			switch ev.KindCode {
			case pb.HistoryKind_HISTORY_KIND_SUBMIT:
				submitCaller = ev.Caller
			case pb.HistoryKind_HISTORY_KIND_REFUSED_CALL:
				got[refusal{ev.Caller, ev.Method, ev.ReasonCode, ev.Count}] = true
			}
		}
		if submitCaller != "planner/planner1" {
			t.Fatalf("submit recorded with caller %q, want planner/planner1 (the original caller, not the forwarding node)", submitCaller)
		}
		if reflect.DeepEqual(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("refused calls recorded: %v, want %v", got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func shortMethod(full string) string { return full[strings.LastIndex(full, "/")+1:] }

// A client over its write rate is refused RESOURCE_EXHAUSTED (reason
// RATE_LIMIT) before the log; another identity is not held up by it.
func TestWriteRatePerIdentity(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Nodes: 1, TLS: true, Tune: func(cfg *cluster.Config) { cfg.WriteRate, cfg.WriteBurst = 0.01, 2 }})
	a, b := c.Certificate(auth.RoleOperator, "ops-a"), c.Certificate(auth.RoleOperator, "ops-b")
	thaw := &pb.SetFreezeRequest{Frozen: false}
	for i := range 2 {
		if code := callAs(t, c.GRPCAddrs[0], a, pb.ClusterService_SetFreeze_FullMethodName, thaw); code != codes.OK {
			t.Fatalf("write %d of the burst: %v", i+1, code)
		}
	}
	if code := callAs(t, c.GRPCAddrs[0], a, pb.ClusterService_SetFreeze_FullMethodName, thaw); code != codes.ResourceExhausted {
		t.Fatalf("a write past the burst: %v, want RESOURCE_EXHAUSTED", code)
	}
	if code := callAs(t, c.GRPCAddrs[0], b, pb.ClusterService_SetFreeze_FullMethodName, thaw); code != codes.OK {
		t.Fatalf("another identity: %v, want OK", code)
	}
	if code := callAs(t, c.GRPCAddrs[0], a, pb.ClusterService_GetConfig_FullMethodName, &pb.GetConfigRequest{}); code != codes.OK {
		t.Fatalf("a read by the limited client: %v, want OK (reads are not rate-limited)", code)
	}
}

// With TLS, the cap on open watches is per identity: a second watch of
// one identity is refused, another identity's is not.
func TestWatchCapPerIdentity(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Nodes: 1, TLS: true, Tune: func(cfg *cluster.Config) { cfg.MaxWatchersPerClient = 1 }})
	watch := func(l *auth.Loader) (context.CancelFunc, error) {
		conn, err := grpc.NewClient(c.GRPCAddrs[0], grpc.WithTransportCredentials(credentials.NewTLS(l.ClientConfig(""))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, err := pb.NewEnactServiceClient(conn).WatchApplied(ctx, &pb.WatchAppliedRequest{})
		if err != nil {
			cancel()
			return nil, err
		}
		// A refused watch ends at once; an admitted one stays open, with
		// nothing applied to send.
		errc := make(chan error, 1)
		go func() { _, err := s.Recv(); errc <- err }()
		select {
		case err := <-errc:
			cancel()
			return nil, err
		case <-time.After(time.Second):
			return cancel, nil
		}
	}
	a, b := c.Certificate(auth.RoleReader, "reader-a"), c.Certificate(auth.RoleReader, "reader-b")
	stop, err := watch(a)
	if err != nil {
		t.Fatalf("first watch of reader-a: %v", err)
	}
	defer stop()
	if _, err := watch(a); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second watch of reader-a: %v, want RESOURCE_EXHAUSTED", err)
	}
	stopB, err := watch(b)
	if err != nil {
		t.Fatalf("reader-b, from the same address: %v", err)
	}
	stopB()
}

// A certificate of the CA that names no dnsplan identity gets through the
// handshake and no further: UNAUTHENTICATED.
func TestCertificateWithoutIdentity(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Nodes: 1, TLS: true})
	caCert, caKey, err := auth.LoadCA(c.CertDir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(99), Subject: pkix.Name{CommonName: "nobody"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	conn, err := grpc.NewClient(c.GRPCAddrs[0], grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = pb.NewClusterServiceClient(conn).GetConfig(clustertest.Ctx(t), &pb.GetConfigRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("GetConfig with a certificate that names no identity: %v, want UNAUTHENTICATED", err)
	}
}
