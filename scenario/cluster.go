package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/dnsplan/dnsplan/cluster"
)

// localCluster is a three-node cluster inside this process, as dnsplan dev
// runs one, but on ephemeral loopback ports so that runs (and tests) never
// collide, with short Raft timeouts so that it is ready in about a second.
type localCluster struct {
	ids, grpc, dns []string
	nodes          []*cluster.Node
}

// startCluster starts three founding nodes at once and waits, up to
// timeout, until each knows the leader and every member has registered its
// gRPC address (the enactors' read-back needs them).
func startCluster(ctx context.Context, dir string, legacy bool, logger *slog.Logger, timeout time.Duration) (*localCluster, error) {
	const size = 3
	c := &localCluster{nodes: make([]*cluster.Node, size)}
	var (
		peers     []cluster.Peer
		raftLis   []net.Listener
		grpcLis   []net.Listener
		dnsUDP    []net.PacketConn
		dnsTCP    []net.Listener
		listening []io.Closer // closed if the start fails before the nodes own them
	)
	fail := func(err error) (*localCluster, error) {
		for _, l := range listening {
			l.Close()
		}
		c.close()
		return nil, err
	}
	// Every listener is opened before any node starts: the founding list
	// needs each node's Raft address, and a port held open cannot be taken
	// by anything else in between.
	for i := range size {
		id := fmt.Sprintf("n%d", i+1)
		rl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fail(err)
		}
		listening = append(listening, rl)
		gl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fail(err)
		}
		listening = append(listening, gl)
		udp, tcp, err := listenDNS()
		if err != nil {
			return fail(err)
		}
		listening = append(listening, udp, tcp)
		c.ids = append(c.ids, id)
		c.grpc = append(c.grpc, gl.Addr().String())
		c.dns = append(c.dns, udp.LocalAddr().String())
		peers = append(peers, cluster.Peer{ID: id, RaftAddr: rl.Addr().String()})
		raftLis, grpcLis = append(raftLis, rl), append(grpcLis, gl)
		dnsUDP, dnsTCP = append(dnsUDP, udp), append(dnsTCP, tcp)
	}

	errs := make([]error, size)
	var wg sync.WaitGroup
	for i := range size {
		// Founding nodes may start in any order; starting them together
		// keeps the first election short.
		wg.Go(func() {
			c.nodes[i], errs[i] = cluster.Start(cluster.Config{
				ID:                 c.ids[i],
				DataDir:            filepath.Join(dir, c.ids[i]),
				RaftListener:       raftLis[i],
				GRPCListener:       grpcLis[i],
				DNSPacketConn:      dnsUDP[i],
				DNSListener:        dnsTCP[i],
				InitialCluster:     peers,
				HeartbeatTimeout:   250 * time.Millisecond,
				ElectionTimeout:    250 * time.Millisecond,
				LeaderLeaseTimeout: 150 * time.Millisecond,
				Legacy:             legacy,
				Logger:             logger.With("node", c.ids[i]),
				RaftLogOutput:      io.Discard,
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fail(fmt.Errorf("starting the cluster: %w", err))
	}
	err := waitFor(ctx, timeout, "a leader and every member registered", func() bool {
		for _, n := range c.nodes {
			st, err := n.Status()
			if err != nil || st.GetLeaderId() == "" || len(st.GetMembers()) != size {
				return false
			}
			for _, m := range st.GetMembers() {
				if m.GetGrpcAddr() == "" {
					return false
				}
			}
		}
		return true
	})
	if err != nil {
		return fail(err)
	}
	return c, nil
}

// listenDNS opens UDP and TCP on one free loopback port, as a DNS server
// needs. A free UDP port may be taken for TCP; a few tries find one.
func listenDNS() (net.PacketConn, net.Listener, error) {
	var err error
	for range 20 {
		var udp net.PacketConn
		if udp, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			return nil, nil, err
		}
		var tcp net.Listener
		if tcp, err = net.Listen("tcp", udp.LocalAddr().String()); err == nil {
			return udp, tcp, nil
		}
		udp.Close()
	}
	return nil, nil, fmt.Errorf("no loopback port free for both UDP and TCP: %w", err)
}

// close stops every node that started.
func (c *localCluster) close() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		if n != nil {
			// Nodes stop in parallel: a follower that outlives the leader
			// only waits out its timeouts.
			wg.Go(func() { _ = n.Close() })
		}
	}
	wg.Wait()
}
