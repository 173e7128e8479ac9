package cluster

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// maxRequestBytes is the server's send and receive limit, the same as
// every client's (contract.MaxMessageBytes): an oversize plan reaches
// validation and gets INVALID_ARGUMENT with a clear message; beyond it
// gRPC itself answers RESOURCE_EXHAUSTED.
const maxRequestBytes = contract.MaxMessageBytes

// The largest valid plan must fit every message limit with room to spare
// (the stored plan's generation and time, a stream's envelope): this
// fails to compile if contract.MaxPlanBytes grows past half the limit.
const _ uint = maxRequestBytes - 2*contract.MaxPlanBytes

// maxConcurrentStreams bounds the calls one connection may have open at
// once (watches included): a client cannot hold unbounded server
// goroutines on one connection.
const maxConcurrentStreams = 256

// gRPC keepalive of the server (see startGRPC).
const (
	keepaliveTime    = 30 * time.Second
	keepaliveTimeout = 10 * time.Second
	keepaliveMinTime = 10 * time.Second
)

func (n *Node) startGRPC() error {
	lis := n.cfg.GRPCListener
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", n.cfg.GRPCAddr); err != nil {
			return fmt.Errorf("cluster: grpc listen: %w", err)
		}
	}
	conns := newConnTracker(lis)
	n.grpcLis = conns
	opts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(maxConcurrentStreams),
		grpc.MaxRecvMsgSize(maxRequestBytes),
		grpc.MaxSendMsgSize(maxRequestBytes),
		// Close connections whose peer is gone or frozen: the server pings
		// a connection quiet for keepaliveTime and drops it if no answer
		// comes within keepaliveTimeout. Clients may ping too, but not
		// more often than keepaliveMinTime.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
		// Errors outermost, so that every refusal, the table's included,
		// is mapped to its code.
		grpc.ChainUnaryInterceptor(n.unaryErrors, n.route),
		grpc.ChainStreamInterceptor(streamErrors, n.routeStream),
	}
	if n.cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(n.cfg.TLS.ServerConfig())))
	}
	s := grpc.NewServer(opts...)
	registerServices(s, n, newWatchHub(n, conns, watchLimitsOf(n.cfg), n.metrics.registry), n.cfg.Legacy)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, hs)
	reflection.Register(s)
	n.grpc = s
	n.goLoop(func() {
		if err := s.Serve(conns); err != nil {
			n.log.Error("grpc server stopped", "err", err)
		}
	})
	return nil
}

// registerServices registers the API's services on s; every method they
// have is in the method table (TestMethodTable).
func registerServices(s *grpc.Server, c core, watches *watchHub, legacy bool) {
	pb.RegisterPlanServiceServer(s, &planService{c: c, watches: watches})
	pb.RegisterLeaseServiceServer(s, &leaseService{c: c})
	pb.RegisterEnactServiceServer(s, &enactService{c: c, watches: watches})
	pb.RegisterClusterServiceServer(s, &clusterService{c: c})
	if legacy {
		pb.RegisterLegacyServiceServer(s, &legacyService{c: c})
	}
}

// One page of a list answer (ListPlans, ListApplied) holds at most
// listPageMax items and, unless it holds a single item, at most
// listPageBytes encoded: half the message limit, so a page never nears it,
// and a single item of the largest valid size (below half the limit, see
// above) always fits.
const (
	listPageMax   = 1000
	listPageBytes = maxRequestBytes / 2
)

// page returns how many of items, from the first, make one page.
func page[M proto.Message](items []M, limit uint32) int {
	most := listPageMax
	if limit > 0 && limit < listPageMax {
		most = int(limit)
	}
	size := 0
	for i, m := range items {
		size += proto.Size(m)
		if i == most || (i > 0 && size > listPageBytes) {
			return i
		}
	}
	return len(items)
}

// timeoutOf is the time left before ctx's deadline, or def.
func timeoutOf(ctx context.Context, def time.Duration) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d)
	}
	return def
}
