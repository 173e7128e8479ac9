package integration

import (
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster/clustertest"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// A cluster on mutual TLS works end to end (Raft between nodes, a write
// forwarded from a follower to the leader, reads), and admits no client
// without a certificate of its CA.
func TestTLSCluster(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{TLS: true})
	ctx := clustertest.Ctx(t)
	f := (c.Leader() + 1) % 3
	follower, err := client.New([]string{c.GRPCAddrs[f]}, client.WithTLS(c.Certificate(auth.RoleOperator, "ops").ClientConfig("")))
	if err != nil {
		t.Fatal(err)
	}
	defer follower.Close()
	res, err := follower.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: &pb.Plan{PlannerId: "p", Endpoints: []*pb.EndpointPlan{{
		Name: endpoint, Ttl: 30, Targets: []*pb.Target{{Id: "lb-1", Address: "192.0.2.1", Weight: 1}}}}}})
	if err != nil {
		t.Fatalf("submit through a follower over TLS: %v", err)
	}
	if _, err := follower.GetPlan(ctx, &pb.GetPlanRequest{Generation: res.GetGeneration()}); err != nil {
		t.Fatalf("linearizable read through a follower over TLS: %v", err)
	}

	// gRPC health and reflection answer an authenticated client.
	conn, err := grpc.NewClient(c.GRPCAddrs[f], grpc.WithTransportCredentials(credentials.NewTLS(c.Certificate(auth.RoleReader, "r").ClientConfig(""))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
	rs, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	lr, err := rs.Recv()
	if err != nil {
		t.Fatalf("reflection: %v", err)
	}
	if !slices.ContainsFunc(lr.GetListServicesResponse().GetService(), func(s *reflectionpb.ServiceResponse) bool { return s.GetName() == "dnsplan.v1.PlanService" }) {
		t.Fatalf("reflection lists %v", lr.GetListServicesResponse().GetService())
	}

	other := filepath.Join(t.TempDir(), "other")
	if err := auth.InitCA(other, 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := auth.Issue(other, auth.IssueRequest{Identity: auth.Identity{Role: auth.RoleOperator, Name: "intruder"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	intruder, err := auth.NewLoader(auth.FilesIn(other, "intruder"))
	if err != nil {
		t.Fatal(err)
	}
	noCert := c.Certificate(auth.RoleOperator, "ops").ClientConfig("")
	noCert.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }
	for name, opt := range map[string][]client.Option{
		"plaintext":      nil,
		"no certificate": {client.WithTLS(noCert)},
		"another CA":     {client.WithTLS(intruder.ClientConfig(""))},
	} {
		cl, err := client.New(c.GRPCAddrs, append(opt, client.WithRetryBudget(2*time.Second))...)
		if err != nil {
			t.Fatal(err)
		}
		_, err = cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: &pb.Plan{PlannerId: "x", Endpoints: []*pb.EndpointPlan{{
			Name: endpoint, Ttl: 30, Targets: []*pb.Target{{Id: "lb-9", Address: "192.0.2.9", Weight: 1}}}}}})
		cl.Close()
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s: submit answered %v, want refused (UNAVAILABLE: no connection)", name, err)
		}
	}
	if p, err := follower.GetPlan(ctx, &pb.GetPlanRequest{Newest: true}); err != nil || p.GetGeneration() != res.GetGeneration() {
		t.Fatalf("a refused client stored a plan: newest %v, %v", p.GetGeneration(), err)
	}
}

// One AppendEntries at a high term over a plain TCP connection to a
// follower's Raft port is what it took to take over a cluster without TLS:
// the follower adopts the term. With TLS, neither a plain peer nor a peer
// with a certificate of the CA that is not a node's gets anything in.
func TestRaftPortAdmitsOnlyNodes(t *testing.T) {
	attack := func(t *testing.T, c *clustertest.Cluster, stream raft.StreamLayer) (before, after uint64, err error) {
		t.Helper()
		f := (c.Leader() + 1) % 3
		st, _ := c.Node(f).Status()
		before = st.GetTerm()
		trans := raft.NewNetworkTransport(stream, 1, 2*time.Second, io.Discard)
		defer trans.Close()
		var resp raft.AppendEntriesResponse
		err = trans.AppendEntries(raft.ServerID(c.IDs[f]), raft.ServerAddress(c.RaftAddrs[f]), &raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ID: []byte("intruder"), Addr: []byte("127.0.0.1:1")},
			Term:      before + 1000,
		}, &resp)
		time.Sleep(200 * time.Millisecond)
		st, _ = c.Node(f).Status()
		return before, st.GetTerm(), err
	}

	t.Run("plaintext cluster: the attack lands", func(t *testing.T) {
		c := clustertest.Start(t, clustertest.Options{})
		before, after, err := attack(t, c, newPlainStream(t, nil))
		if err != nil || after < before+1000 {
			t.Fatalf("without TLS the follower's term went %d -> %d (%v); the attack this test guards against no longer lands, so the TLS case proves nothing", before, after, err)
		}
	})
	t.Run("TLS cluster: refused", func(t *testing.T) {
		c := clustertest.Start(t, clustertest.Options{TLS: true})
		for name, cfg := range map[string]*tls.Config{
			"plain TCP":                 nil,
			"an operator's certificate": c.Certificate(auth.RoleOperator, "ops").ClientConfig(""),
		} {
			before, after, err := attack(t, c, newPlainStream(t, cfg))
			if err == nil || after != before {
				t.Errorf("%s: AppendEntries answered %v, term %d -> %d; want refused, term unchanged", name, err, before, after)
			}
		}
	})
}

// plainStream is an attacker's Raft stream layer: TCP, or TLS with cfg.
type plainStream struct {
	net.Listener
	tls *tls.Config
}

func newPlainStream(t *testing.T, cfg *tls.Config) *plainStream {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &plainStream{Listener: l, tls: cfg}
}

func (s *plainStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil || s.tls == nil {
		return c, err
	}
	tc := tls.Client(c, s.tls)
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}
