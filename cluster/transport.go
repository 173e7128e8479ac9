package cluster

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/dnsplan/dnsplan/auth"
)

// streamLayer is Raft's TCP transport on a listener the node was given or
// opened itself, advertising an address that may be a host name (a compose
// service name) rather than the IP raft.NewTCPTransport insists on. With
// TLS, both ends of every Raft connection are nodes of the cluster CA: a
// peer without a node certificate gets nothing in (not one byte of a
// request is read from it) and nothing out.
type streamLayer struct {
	net.Listener
	advertise net.Addr
	dial      func(addr string, timeout time.Duration) (net.Conn, error) // nil: plain TCP
	tls       *auth.Loader                                               // nil: plaintext
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func (s *streamLayer) Addr() net.Addr { return s.advertise }

// handshakeTimeout bounds a Raft TLS handshake: a peer that connects and
// stalls holds one goroutine for that long, never the accept loop.
const handshakeTimeout = 10 * time.Second

// Accept hands Raft each connection at once; with TLS the handshake and
// the check that the peer is a node run on the connection's first read,
// in Raft's goroutine for that connection.
func (s *streamLayer) Accept() (net.Conn, error) {
	c, err := s.Listener.Accept()
	if err != nil || s.tls == nil {
		return c, err
	}
	return &nodeConn{Conn: tls.Server(c, s.tls.ServerConfig())}, nil
}

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	var err error
	if s.dial != nil {
		c, err = s.dial(string(addr), timeout)
	} else {
		c, err = (&net.Dialer{Timeout: timeout}).Dial("tcp", string(addr))
	}
	if err != nil || s.tls == nil {
		return c, err
	}
	tc := tls.Client(c, s.tls.ClientConfig(""))
	_ = tc.SetDeadline(time.Now().Add(min(timeout, handshakeTimeout)))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, fmt.Errorf("cluster: raft TLS to %s: %w", addr, err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}

// nodeConn is an accepted Raft connection that admits only a node: its
// first read or write completes the handshake and checks the client's
// role.
type nodeConn struct {
	*tls.Conn
	once sync.Once
	err  error
}

// check completes the handshake and the role check, once.
func (c *nodeConn) check() error {
	c.once.Do(func() {
		_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
		if err := c.Handshake(); err != nil {
			c.err = fmt.Errorf("cluster: raft TLS from %s: %w", c.RemoteAddr(), err)
		} else if id, err := auth.PeerIdentity(c.ConnectionState()); err != nil {
			c.err = fmt.Errorf("cluster: raft connection from %s: %w", c.RemoteAddr(), err)
		} else if id.Role != auth.RoleNode {
			c.err = fmt.Errorf("cluster: raft connection from %s refused: %s is not a node", c.RemoteAddr(), id)
		}
		_ = c.SetDeadline(time.Time{})
		if c.err != nil {
			c.Close()
		}
	})
	return c.err
}

func (c *nodeConn) Read(b []byte) (int, error) {
	if err := c.check(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *nodeConn) Write(b []byte) (int, error) {
	if err := c.check(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// hostPort is a net.Addr for an advertised "host:port".
type hostPort string

func (h hostPort) Network() string { return "tcp" }
func (h hostPort) String() string  { return string(h) }
