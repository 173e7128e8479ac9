// Package testnet finds free loopback ports for tests. It imports nothing
// of the project, so every test package can use it, the cluster's own
// internal tests included.
package testnet

import (
	"net"
	"testing"
)

// FreeAddr reserves a loopback TCP port by listening and closing; the
// caller listens on it at once.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// FreeDNSAddr finds a loopback port free for both UDP and TCP.
func FreeDNSAddr(t testing.TB) string {
	t.Helper()
	for range 20 {
		u, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := u.LocalAddr().String()
		l, err := net.Listen("tcp", addr)
		u.Close()
		if err == nil {
			l.Close()
			return addr
		}
	}
	t.Fatal("testnet: no port free for both UDP and TCP")
	return ""
}
