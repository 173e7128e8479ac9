package cluster

import (
	"fmt"
	"net"

	"github.com/dnsplan/dnsplan/cluster/dnsserver"
	"github.com/dnsplan/dnsplan/cluster/fsm"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// startDNS serves the node's zones over UDP and TCP from its local replica,
// so a node cut off from the leader keeps answering its last known state.
func (n *Node) startDNS() error {
	udp, tcp := n.cfg.DNSPacketConn, n.cfg.DNSListener
	if udp == nil && tcp == nil {
		if n.cfg.DNSAddr == "" {
			return nil
		}
		var err error
		if udp, err = net.ListenPacket("udp", n.cfg.DNSAddr); err != nil {
			return fmt.Errorf("cluster: dns udp listen: %w", err)
		}
		if tcp, err = net.Listen("tcp", n.cfg.DNSAddr); err != nil {
			udp.Close()
			return fmt.Errorf("cluster: dns tcp listen: %w", err)
		}
	}
	srv, err := dnsserver.New(dnsserver.Config{
		Zones:      n.cfg.Zones,
		NSNames:    n.cfg.NSNames,
		Logger:     n.cfg.Logger.With("component", "dns", "node", n.cfg.ID),
		Registerer: n.metrics.registry,
	})
	if err != nil {
		return err
	}
	n.dns = srv
	n.refreshDNS()
	if err := srv.Start(udp, tcp); err != nil {
		return err
	}
	n.dnsAddr = udp.LocalAddr().String()
	n.goLoop(n.dnsUpdateLoop)
	return nil
}

// dnsUpdateLoop hands the DNS server a fresh view after every change to
// the replica. The change channel is taken before reading, so none is lost.
func (n *Node) dnsUpdateLoop() {
	for {
		ch, _ := n.machine.changed()
		n.refreshDNS()
		select {
		case <-ch:
		case <-n.closing:
			return
		}
	}
}

func (n *Node) refreshDNS() {
	var applied []*pb.AppliedEndpoint
	n.machine.read(func(s *fsm.State) { applied = s.AppliedAll() })
	n.dns.Update(applied)
}

// DNSAddr is the address the DNS server answers on, or "".
func (n *Node) DNSAddr() string { return n.dnsAddr }
