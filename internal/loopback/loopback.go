// Package loopback finds free loopback ports for in-process clusters and
// tests. It imports nothing of the project, so every package can use it,
// the cluster's own internal tests included.
//
// Ports come from below the kernel's ephemeral range, not from port 0: a
// port the kernel handed out for a listen-and-close is also what it hands
// the next outgoing connection (a gRPC dial, a Raft pipeline), and a node
// restarted on it then fails with "address already in use". Below the
// ephemeral range only listeners compete, and each port is checked by
// binding before it is handed out, never twice in one process.
package loopback

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// lowest is the bottom of the range ports are drawn from; the top is the
// start of the ephemeral range.
const lowest = 10000

var (
	// mu guards handed, the ports this process has handed out.
	mu     sync.Mutex
	handed = map[int]bool{}
)

// ephemeralStart is the first port of the kernel's ephemeral range
// (Linux's default start when it cannot be read).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if p, err := strconv.Atoi(f[0]); err == nil && p > lowest+1000 {
				return p
			}
		}
	}
	return 32768
}

// pick draws unused ports until bind succeeds on one.
func pick(bind func(addr string) error) error {
	top := ephemeralStart()
	mu.Lock()
	defer mu.Unlock()
	for range 1000 {
		port := lowest + rand.IntN(top-lowest)
		if handed[port] {
			continue
		}
		if bind(fmt.Sprintf("127.0.0.1:%d", port)) == nil {
			handed[port] = true
			return nil
		}
	}
	return errors.New("loopback: no free port found")
}

// Listen listens on a free loopback TCP port and keeps it: nothing can
// take the port between choosing and using it.
func Listen() (net.Listener, error) {
	var l net.Listener
	err := pick(func(addr string) (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	})
	return l, err
}

// ListenDNS opens UDP and TCP on one free loopback port, as a DNS server
// needs.
func ListenDNS() (net.PacketConn, net.Listener, error) {
	var (
		udp net.PacketConn
		tcp net.Listener
	)
	err := pick(func(addr string) (err error) {
		if udp, err = net.ListenPacket("udp", addr); err != nil {
			return err
		}
		if tcp, err = net.Listen("tcp", addr); err != nil {
			udp.Close()
		}
		return err
	})
	return udp, tcp, err
}

// FreeAddr returns a loopback TCP address nothing listens on; the caller
// listens on it at once.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// FreeDNSAddr returns a loopback port free for both UDP and TCP.
func FreeDNSAddr(t testing.TB) string {
	t.Helper()
	udp, tcp, err := ListenDNS()
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	defer tcp.Close()
	return udp.LocalAddr().String()
}
