package local_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

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
