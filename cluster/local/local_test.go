package local_test

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/cluster/local"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

const wait = 45 * time.Second

func fast(_ int, cfg *cluster.Config) { local.Fast(cfg) }

// A cluster founded by the launcher carries its design; a node killed and
// started again on its slot rejoins; a wiped node joining through another
// member comes back empty and catches up.
func TestLauncher(t *testing.T) {
	ctx := context.Background()
	c, err := local.Start(ctx, local.Options{Dir: t.TempDir(), Design: contract.Legacy, DNS: true, Configure: fast}, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Slots() != 3 || c.Members() != 3 {
		t.Fatalf("%d slots, %d members; want 3 and 3", c.Slots(), c.Members())
	}
	for i := range c.Slots() {
		if a := c.Addrs(i); a.ID == "" || a.Raft == "" || a.GRPC == "" || a.DNS == "" {
			t.Fatalf("slot %d has addresses %+v", i, a)
		}
	}
	lead := c.Leader()
	if lead < 0 {
		t.Fatal("no leader after WaitReady")
	}
	conn, err := grpc.NewClient(c.Addrs(lead).GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	cfg, err := pb.NewClusterServiceClient(conn).GetConfig(cctx, &pb.GetConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GetDesign() != pb.Design_DESIGN_LEGACY {
		t.Fatalf("founded with design %v, want legacy", cfg.GetDesign())
	}
	// Without TLS a client dials in plaintext, and there is nothing to
	// issue.
	if cfg, err := c.ClientTLS(auth.Identity{Role: auth.RoleReader, Name: "r"}); cfg != nil || err != nil {
		t.Fatalf("ClientTLS without TLS = %v, %v; want nil, nil", cfg, err)
	}
	if _, err := c.Certificate(auth.Identity{Role: auth.RoleReader, Name: "r"}); !errors.Is(err, local.ErrNoTLS) {
		t.Fatalf("Certificate without TLS: %v, want ErrNoTLS", err)
	}

	// Kill and restart a follower on its own slot.
	f := (lead + 1) % 3
	c.StopNode(f)
	if c.Node(f) != nil {
		t.Fatal("a stopped node is still returned")
	}
	if err := c.StartNode(f); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx, wait); err != nil {
		t.Fatal(err)
	}

	// Wipe it and let it join through the leader.
	c.StopNode(f)
	if err := c.Wipe(f); err != nil {
		t.Fatal(err)
	}
	c.SetJoin(f, c.Addrs(lead).GRPC)
	if err := c.StartNode(f); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx, wait); err != nil {
		t.Fatal(err)
	}
}

func TestLauncherRefusesAnUnknownDesign(t *testing.T) {
	if _, err := local.New(local.Options{Dir: t.TempDir(), Design: "both"}); err == nil {
		t.Fatal("New accepted design \"both\"")
	}
}

// A TLS cluster becomes ready on its own node certificates (Raft, joining
// and forwarding included); a client with a certificate the cluster
// issued gets in, as the role it names, and one without gets nowhere. A
// node added later is issued its certificate with its slot and joins.
func TestLauncherTLS(t *testing.T) {
	ctx := context.Background()
	c, err := local.Start(ctx, local.Options{Dir: t.TempDir(), TLS: true, Configure: fast}, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reader := auth.Identity{Role: auth.RoleReader, Name: "r"}
	dial := func(cfg *tls.Config) pb.ClusterServiceClient {
		t.Helper()
		creds := insecure.NewCredentials()
		if cfg != nil {
			creds = credentials.NewTLS(cfg)
		}
		conn, err := grpc.NewClient(c.Addrs(0).GRPC, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return pb.NewClusterServiceClient(conn)
	}
	cfg, err := c.ClientTLS(reader)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	as := dial(cfg)
	if _, err := as.Status(cctx, &pb.StatusRequest{}); err != nil {
		t.Fatalf("Status with a reader's certificate: %v", err)
	}
	if _, err := as.SetFreeze(cctx, &pb.SetFreezeRequest{Frozen: true}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("SetFreeze as a reader answered %v, want PERMISSION_DENIED", err)
	}

	// One name, one certificate.
	if l, err := c.Certificate(reader); err != nil || l.Identity() != reader {
		t.Fatalf("Certificate(%s) again = %v, %v", reader, l, err)
	}
	if _, err := c.Certificate(auth.Identity{Role: auth.RoleOperator, Name: "r"}); err == nil {
		t.Fatal("a second certificate was issued for the name r")
	}

	// No certificate: plaintext, or TLS presenting none.
	none := cfg.Clone()
	none.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }
	for name, cfg := range map[string]*tls.Config{"plaintext": nil, "no certificate": none} {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := dial(cfg).Status(sctx, &pb.StatusRequest{})
		cancel()
		if err == nil {
			t.Fatalf("%s: Status answered", name)
		}
	}

	// A fourth node joins through the leader with its own certificate.
	i, err := c.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	lead := c.Leader()
	if lead < 0 {
		t.Fatal("no leader after WaitReady")
	}
	c.SetJoin(i, c.Addrs(lead).GRPC)
	c.SetMember(i, true)
	if err := c.StartNode(i); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx, wait); err != nil {
		t.Fatal(err)
	}
}
