package enactor_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dnsplan/dnsplan/chaos"
	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/enactor"
)

// cuttableCluster starts a three-node cluster whose Raft links go through
// a chaos.Network, so a test can cut a node off from the quorum while
// its clients still reach it over gRPC.
func cuttableCluster(t *testing.T) (*clustertest.Cluster, *chaos.Network) {
	t.Helper()
	var (
		once sync.Once
		nw   *chaos.Network
	)
	c := clustertest.Start(t, clustertest.Options{Tune: func(cfg *cluster.Config) {
		// Every node gets the same founding list, so the first to start
		// builds the network from it.
		once.Do(func() {
			var addrs []string
			for _, p := range cfg.InitialCluster {
				addrs = append(addrs, p.RaftAddr)
			}
			nw = chaos.NewNetwork(addrs)
		})
		i := slices.IndexFunc(cfg.InitialCluster, func(p cluster.Peer) bool { return p.ID == cfg.ID })
		cfg.RaftDial = nw.Dialer(i)
	}})
	return c, nw
}

// Hole 3 (L2): the lease holder's plan watch is served by a node that is
// then cut off from the quorum. Its renewals fail over to the other nodes,
// so it keeps the lease and no standby can take over; it must still learn
// of a plan submitted through the majority and apply it within one lease
// TTL plus one renewal interval and a margin.
func TestWatchNodeCutOffPlansStillApplied(t *testing.T) {
	c, nw := cuttableCluster(t)
	cl := c.Client()
	leader := c.Leader()
	cut := (leader + 1) % len(c.IDs)
	// The enactor's client starts at the node to be cut: its watch opens
	// there and stays as long as the stream does.
	addrs := []string{c.GRPCAddrs[cut]}
	for i, a := range c.GRPCAddrs {
		if i != cut {
			addrs = append(addrs, a)
		}
	}
	pinned, err := client.New(addrs, client.WithLogger(c.Log))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pinned.Close() })
	es := startEnactors(t, c, func(_ string, cfg *enactor.Config) { cfg.Client = pinned }, "az-a")
	h := waitOneHolder(t, cl, es, lease0)
	g1 := submit(t, cl, endpointA)
	waitServed(t, c, cl, g1, endpointA)

	nw.Isolate(cut)
	g2 := submit(t, cl, endpointA)
	submitted := time.Now()
	bound := testTTL + testTTL/3 + 3*time.Second
	clustertest.WaitFor(t, bound, "the plan submitted after the cut to be served by the connected nodes", func() bool {
		for i, addr := range c.GRPCAddrs {
			if i != cut && servedBy(t, cl, addr, endpointA).GetGeneration() < g2 {
				return false
			}
		}
		return true
	})
	t.Logf("generation %d applied %s after it was submitted", g2, time.Since(submitted).Round(time.Millisecond))
	if got := waitOneHolder(t, cl, es, lease0); got != h {
		t.Fatalf("lease moved from %s to %s", h.id, got.id)
	}
}
