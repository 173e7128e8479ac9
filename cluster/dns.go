package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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
	if n.dnsFloor, err = readServedIndex(n.cfg.DataDir); err != nil {
		return err
	}
	if err := srv.Start(udp, tcp); err != nil {
		return err
	}
	n.dnsAddr = udp.LocalAddr().String()
	n.goLoop(n.dnsUpdateLoop)
	return nil
}

// dnsUpdateLoop hands the DNS server a fresh view after every change to
// the replica. The change channel is taken before reading, so none is lost.
//
// A restarted node's replica starts from its last snapshot and only moves
// on once it learns from a leader what is committed, so it can be older
// than what the node served before it stopped. Serving it would take the
// node's answers back to an older generation (I1), or empty (I2). So each
// node records the log index its DNS last served (a small file in the data
// dir) and, after a restart, serves nothing (SERVFAIL: resolvers go to
// another node) until its replica has caught up to that index.
func (n *Node) dnsUpdateLoop() {
	var persisted uint64
	for {
		ch, index := n.machine.changed()
		if index >= n.dnsFloor {
			var applied []*pb.AppliedEndpoint
			n.machine.read(func(s *fsm.State) { applied, index = s.AppliedAll(), s.LastIndex() })
			n.dns.Update(applied)
			if index > persisted {
				if err := writeServedIndex(n.cfg.DataDir, index); err != nil {
					n.log.Error("recording the index DNS serves", "err", err)
				} else {
					persisted = index
				}
			}
		}
		select {
		case <-ch:
		case <-n.closing:
			return
		}
	}
}

// servedIndexFile holds the log index of the state DNS last served.
const servedIndexFile = "dns-served-index"

func readServedIndex(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, servedIndexFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cluster: reading %s: %w", servedIndexFile, err)
	}
	index, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cluster: %s holds %q: %w", servedIndexFile, b, err)
	}
	return index, nil
}

// writeServedIndex replaces the file atomically (write, then rename). It
// survives a crash of the process; after a power loss it may hold an older
// index, which only shortens the wait.
func writeServedIndex(dir string, index uint64) error {
	tmp := filepath.Join(dir, servedIndexFile+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(index, 10)+"\n"), 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, servedIndexFile))
}

// DNSAddr is the address the DNS server answers on, or "".
func (n *Node) DNSAddr() string { return n.dnsAddr }
