package scenario

import (
	"cmp"
	"context"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/cluster/local"
	"github.com/dnsplan/dnsplan/contract"
)

// localCluster is a three-node cluster inside this process, as dnsplan dev
// runs one (on mutual TLS, unless the run is insecure), but on free
// loopback ports so that runs (and tests) never collide, with short Raft
// timeouts so that it is ready in about a second.
type localCluster struct {
	*local.Cluster
	ids, grpc, dns []string
}

// startCluster starts three founding nodes of design d at once, on the
// options' store, and waits, up to the step timeout, until the cluster is
// ready and every member has registered its gRPC address (the enactors'
// read-back needs them). configure, if set, adjusts every node's
// configuration after the fast Raft timeouts.
func startCluster(ctx context.Context, dir string, d contract.Design, opts Options, configure func(cfg *cluster.Config)) (*localCluster, error) {
	etcd := opts.Etcd
	if opts.Store == cluster.StoreEtcd {
		// The run's own log: its directory's name is unique.
		etcd.Prefix = strings.TrimSuffix(cmp.Or(etcd.Prefix, "/dnsplan-scenario/"), "/") + "/" + filepath.Base(dir) + "/"
	}
	lc, err := local.Start(ctx, local.Options{
		Dir:    dir,
		Design: d,
		DNS:    true,
		TLS:    !opts.Insecure,
		Logger: opts.Logger,
		Store:  opts.Store,
		Etcd:   etcd,
		Configure: func(_ int, cfg *cluster.Config) {
			local.Fast(cfg)
			if configure != nil {
				configure(cfg)
			}
		},
	}, opts.StepTimeout)
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

// client is a client of every node acting as id, with its certificate on
// a TLS cluster.
func (c *localCluster) client(id auth.Identity, logger *slog.Logger) (*client.Client, error) {
	tlsCfg, err := c.ClientTLS(id)
	if err != nil {
		return nil, err
	}
	return client.New(c.grpc, client.WithLogger(logger), client.WithTLS(tlsCfg))
}
