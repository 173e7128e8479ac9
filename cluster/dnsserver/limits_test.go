package dnsserver

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// queryFrom sends one UDP query from a socket bound to local.
func queryFrom(t *testing.T, local, server string) *dns.Msg {
	t.Helper()
	laddr, err := net.ResolveUDPAddr("udp", local)
	if err != nil {
		t.Fatal(err)
	}
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second, Dialer: &net.Dialer{LocalAddr: laddr}}
	r, _, err := c.Exchange(question("api.dnsplan.test.", dns.TypeA), server)
	if err != nil {
		t.Fatalf("query from %s: %v", local, err)
	}
	return r
}

// A flood from one source is answered up to its rate, then truncated (TC,
// no records), while a source in another /24 is answered normally and the
// flooded source still gets whole answers over TCP.
func TestResponseRateLimit(t *testing.T) {
	s := newTestServer(t, Config{RateLimit: 5, RateBurst: 5}, testApplied())
	udp, tcp := startServer(t, s)
	answered, tc := 0, 0
	for range 30 {
		r := queryFrom(t, "127.0.0.1:0", udp)
		switch {
		case r.Truncated && len(r.Answer) == 0:
			tc++
		case len(r.Answer) > 0:
			answered++
		default:
			t.Fatalf("neither an answer nor TC: %v", r)
		}
	}
	if answered < 5 || answered > 8 || tc < 22 {
		t.Fatalf("30 queries from one source at 5/s (burst 5): %d answered, %d truncated", answered, tc)
	}
	if r := queryFrom(t, "127.0.1.1:0", udp); r.Truncated || len(r.Answer) == 0 {
		t.Fatalf("a source in another /24 was limited: %v", r)
	}
	if r := exchange(t, "tcp", tcp, question("api.dnsplan.test.", dns.TypeA)); len(r.Answer) == 0 {
		t.Fatalf("over TCP the flooded source got %v", r)
	}
}

// TCP clients are bounded: at most MaxTCPConns at once (the next waits),
// and a connection idle past TCPIdleTimeout is closed.
func TestTCPBounds(t *testing.T) {
	s := newTestServer(t, Config{MaxTCPConns: 2, TCPIdleTimeout: 300 * time.Millisecond}, testApplied())
	_, tcp := startServer(t, s)
	dial := func() *dns.Conn {
		c, err := dns.DialTimeout("tcp", tcp, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ask := func(c *dns.Conn, wait time.Duration) error {
		_ = c.SetDeadline(time.Now().Add(wait))
		if err := c.WriteMsg(question("api.dnsplan.test.", dns.TypeA)); err != nil {
			return err
		}
		_, err := c.ReadMsg()
		return err
	}
	a, b := dial(), dial()
	defer a.Close()
	defer b.Close()
	if err := ask(a, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := ask(b, time.Second); err != nil {
		t.Fatal(err)
	}
	third := dial() // the kernel accepts it; the server does not yet
	defer third.Close()
	if err := ask(third, 150*time.Millisecond); err == nil {
		t.Fatal("a third connection was served while two were open (cap 2)")
	}
	// a and b go idle past the timeout and are closed; the third is
	// served then (its query waits in its socket).
	time.Sleep(600 * time.Millisecond)
	if err := ask(a, time.Second); err == nil {
		t.Fatal("a connection idle past the timeout still answered")
	}
	_ = third.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := third.ReadMsg(); err != nil {
		t.Fatalf("the waiting connection was not served once slots freed: %v", err)
	}
}
