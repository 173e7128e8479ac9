package cluster

import (
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is Raft's TCP transport on a listener the node was given or
// opened itself, advertising an address that may be a host name (a compose
// service name) rather than the IP raft.NewTCPTransport insists on.
type streamLayer struct {
	net.Listener
	advertise net.Addr
	dial      func(addr string, timeout time.Duration) (net.Conn, error) // nil: plain TCP
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if s.dial != nil {
		return s.dial(string(addr), timeout)
	}
	return (&net.Dialer{Timeout: timeout}).Dial("tcp", string(addr))
}

// hostPort is a net.Addr for an advertised "host:port".
type hostPort string

func (h hostPort) Network() string { return "tcp" }
func (h hostPort) String() string  { return string(h) }
