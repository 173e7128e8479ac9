package dnsq

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsplan/dnsplan/cluster/dnsserver"
	"github.com/dnsplan/dnsplan/internal/loopback"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// An answer truncated by the server's rate limit is asked again over TCP:
// the caller gets the records, never an empty answer.
func TestTruncatedIsAskedOverTCP(t *testing.T) {
	s, err := dnsserver.New(dnsserver.Config{RateLimit: 1, RateBurst: 1})
	if err != nil {
		t.Fatal(err)
	}
	s.Update([]*pb.AppliedEndpoint{{Endpoint: "api.dnsplan.test.", Generation: 1, Ttl: 30, Revision: 1,
		Targets: []*pb.Target{{Id: "a", Address: "192.0.2.1", Weight: 1}}}})
	// One port for UDP and TCP, outside the range the system hands out,
	// so no other test's socket can hold its TCP side.
	udp, tcp, err := loopback.ListenDNS()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(udp, tcp); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := new(dns.Msg)
	m.SetQuestion("api.dnsplan.test.", dns.TypeA)
	addr := udp.LocalAddr().String()
	for i := range 3 {
		r, err := Exchange(context.Background(), m, addr, time.Second)
		if err != nil || len(r.Answer) != 1 || r.Truncated {
			t.Fatalf("query %d: %v, %v", i+1, r, err)
		}
	}
	// The same over UDP alone is truncated after the first.
	r, _, err := (&dns.Client{Net: "udp", Timeout: time.Second}).Exchange(m, addr)
	if err != nil || !r.Truncated {
		t.Fatalf("UDP alone past the limit: %v, %v; want TC", r, err)
	}
}
