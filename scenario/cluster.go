package scenario

import (
	"context"
	"log/slog"
	"time"

	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/cluster/local"
	"github.com/dnsplan/dnsplan/contract"
)

// localCluster is a three-node cluster inside this process, as dnsplan dev
// runs one, but on free loopback ports so that runs (and tests) never
// collide, with short Raft timeouts so that it is ready in about a second.
type localCluster struct {
	*local.Cluster
	ids, grpc, dns []string
}

// startCluster starts three founding nodes of design d at once and waits,
// up to timeout, until each knows the leader and every member has
// registered its gRPC address (the enactors' read-back needs them).
func startCluster(ctx context.Context, dir string, d contract.Design, logger *slog.Logger, timeout time.Duration) (*localCluster, error) {
	lc, err := local.Start(ctx, local.Options{
		Dir:       dir,
		Design:    d,
		DNS:       true,
		Logger:    logger,
		Configure: func(_ int, cfg *cluster.Config) { local.Fast(cfg) },
	}, timeout)
	if err != nil {
		return nil, err
	}
	c := &localCluster{Cluster: lc}
	for i := range lc.Slots() {
		a := lc.Addrs(i)
		c.ids, c.grpc, c.dns = append(c.ids, a.ID), append(c.grpc, a.GRPC), append(c.dns, a.DNS)
	}
	return c, nil
}
