// Package testnet finds free loopback ports for tests. It imports nothing
// of the project, so every test package can use it, the cluster's own
// internal tests included.
//
// Ports come from below the kernel's ephemeral range, not from port 0: a
// port the kernel handed out for a listen-and-close is also what it hands
// the next outgoing connection (a gRPC dial, a Raft pipeline), and a test
// whose node then listens there fails with "address already in use". Below
// the ephemeral range only listeners compete, and each is checked by
// binding before it is handed out, never twice in one process.
package testnet

import (
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

// pick draws unused ports until free reports one free.
func pick(t testing.TB, free func(addr string) bool) string {
	t.Helper()
	top := ephemeralStart()
	mu.Lock()
	defer mu.Unlock()
	for range 1000 {
		port := lowest + rand.IntN(top-lowest)
		if handed[port] {
			continue
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if free(addr) {
			handed[port] = true
			return addr
		}
	}
	t.Fatal("testnet: no free port found")
	return ""
}

// FreeAddr returns a loopback TCP address nothing listens on; the caller
// listens on it at once.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return pick(t, func(addr string) bool {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		l.Close()
		return true
	})
}

// FreeDNSAddr returns a loopback port free for both UDP and TCP.
func FreeDNSAddr(t testing.TB) string {
	t.Helper()
	return pick(t, func(addr string) bool {
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		defer u.Close()
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		l.Close()
		return true
	})
}
