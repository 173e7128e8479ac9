package dnsserver

import (
	"fmt"
	"net"
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// nopWriter discards the reply, so a benchmark measures the handler alone.
type nopWriter struct{}

func (nopWriter) RemoteAddr() net.Addr        { return testUDPAddr }
func (nopWriter) LocalAddr() net.Addr         { return testUDPAddr }
func (nopWriter) WriteMsg(*dns.Msg) error     { return nil }
func (nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (nopWriter) Close() error                { return nil }
func (nopWriter) TsigStatus() error           { return nil }
func (nopWriter) TsigTimersOnly(bool)         {}
func (nopWriter) Hijack()                     {}

func BenchmarkServeDNS(b *testing.B) {
	four := &pb.AppliedEndpoint{
		Endpoint: "four.dnsplan.test.", Generation: 1, Ttl: 60, Revision: 1,
		Targets: []*pb.Target{
			{Id: "a", Address: "10.0.0.1", Weight: 1},
			{Id: "b", Address: "10.0.0.2", Weight: 2},
			{Id: "c", Address: "10.0.0.3", Weight: 3},
			{Id: "d", Address: "10.0.0.4", Weight: 4},
		},
	}
	applied := append(testApplied(), four)
	for _, c := range []struct {
		name    string
		q       *dns.Msg
		metrics bool
	}{
		{"A-4-targets", question("four.dnsplan.test.", dns.TypeA), false},
		{"NXDOMAIN", question("nope.dnsplan.test.", dns.TypeA), false},
		{"A-4-targets-EDNS", withEDNS(question("four.dnsplan.test.", dns.TypeA), 1232), false},
		{"A-4-targets-metrics", question("four.dnsplan.test.", dns.TypeA), true},
	} {
		b.Run(c.name, func(b *testing.B) {
			cfg := Config{}
			if c.metrics {
				cfg.Registerer = prometheus.NewRegistry()
			}
			s := newTestServer(b, cfg, applied)
			b.ReportAllocs()
			for b.Loop() {
				s.ServeDNS(nopWriter{}, c.q)
			}
		})
	}
}

// BenchmarkUpdate is the cost of rebuilding the view, paid after every
// state change.
func BenchmarkUpdate(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			applied := make([]*pb.AppliedEndpoint, n)
			for i := range applied {
				applied[i] = &pb.AppliedEndpoint{
					Endpoint: fmt.Sprintf("e%d.svc.dnsplan.test.", i), Generation: 1, Ttl: 60, Revision: uint64(i + 1),
					Targets: []*pb.Target{
						{Id: "a", Address: "10.0.0.1", Weight: 1},
						{Id: "b", Address: "2001:db8::1", Weight: 1},
					},
				}
			}
			s := newTestServer(b, Config{}, nil)
			b.ReportAllocs()
			for b.Loop() {
				s.Update(applied)
			}
		})
	}
}
