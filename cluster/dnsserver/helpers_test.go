package dnsserver

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// testZones nest on purpose: names under inner.dnsplan.test. belong to it.
var testZones = []string{"dnsplan.test.", "inner.dnsplan.test."}

// testApplied is the applied state most tests answer from. Serials:
// dnsplan.test. = 10 (api), inner.dnsplan.test. = 12 (svc); outside.example.
// is outside every zone, so its revision 20 must not show anywhere.
func testApplied() []*pb.AppliedEndpoint {
	return []*pb.AppliedEndpoint{
		{
			Endpoint: "api.dnsplan.test.", Generation: 3, Ttl: 60, EnactorId: "enactor-a", Revision: 10,
			Targets: []*pb.Target{
				{Id: "a1", Address: "10.0.0.1", Weight: 1},
				{Id: "a2", Address: "10.0.0.2", Weight: 3},
				{Id: "a3-drained", Address: "10.0.0.3", Weight: 0},
				{Id: "b1", Address: "2001:db8::1", Weight: 1},
				{Id: "b2-drained", Address: "2001:db8::2", Weight: 0},
			},
		},
		{
			Endpoint: "v6only.dnsplan.test.", Generation: 1, Ttl: 30, EnactorId: "enactor-b", Revision: 7,
			Targets: []*pb.Target{{Id: "c1", Address: "2001:db8::9", Weight: 5}},
		},
		{
			Endpoint: "www.deep.path.dnsplan.test.", Generation: 2, Ttl: 120, EnactorId: "enactor-b", Revision: 8,
			Targets: []*pb.Target{{Id: "d1", Address: "10.0.1.1", Weight: 1}},
		},
		{
			Endpoint: "svc.inner.dnsplan.test.", Generation: 5, Ttl: 15, EnactorId: "enactor-c", Revision: 12,
			Targets: []*pb.Target{{Id: "e1", Address: "10.0.2.1", Weight: 2}},
		},
		{
			Endpoint: "outside.example.", Generation: 1, Ttl: 60, EnactorId: "enactor-c", Revision: 20,
			Targets: []*pb.Target{{Id: "f1", Address: "10.0.3.1", Weight: 1}},
		},
	}
}

// bigEndpoint has n targets of weight 1, enough to overflow any UDP reply.
func bigEndpoint(name string, n int) *pb.AppliedEndpoint {
	ep := &pb.AppliedEndpoint{Endpoint: name, Generation: 1, Ttl: 60, EnactorId: "enactor-a", Revision: 9}
	for i := range n {
		ep.Targets = append(ep.Targets, &pb.Target{
			Id: fmt.Sprintf("t%d", i), Address: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), Weight: 1,
		})
	}
	return ep
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newTestServer returns a server for testZones with applied loaded, not
// listening.
func newTestServer(t testing.TB, cfg Config, applied []*pb.AppliedEndpoint) *Server {
	t.Helper()
	if cfg.Zones == nil {
		cfg.Zones = testZones
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	if cfg.RateLimit == 0 {
		// The tests send thousands of queries from one address to test
		// other things; the rate limit has tests of its own.
		cfg.RateLimit = 1e9
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s.Update(applied)
	return s
}

// startServer serves s on 127.0.0.1 ephemeral ports and returns the UDP and
// TCP addresses; Close runs at cleanup.
func startServer(t *testing.T, s *Server) (udpAddr, tcpAddr string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	if err := s.Start(pc, ln); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return pc.LocalAddr().String(), ln.Addr().String()
}

func question(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

func withEDNS(m *dns.Msg, size uint16) *dns.Msg {
	m.SetEdns0(size, false)
	return m
}

// exchange sends m with a miekg/dns client over network ("udp" or "tcp").
func exchange(t *testing.T, network, addr string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s exchange %v: %v", network, m.Question, err)
	}
	return r
}

// exchangeRaw sends m over UDP and returns the reply with its size on the
// wire, which a client's unpacked message no longer tells.
func exchangeRaw(t *testing.T, addr string, m *dns.Msg) (*dns.Msg, int) {
	t.Helper()
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, dns.MaxMsgSize)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf[:n]); err != nil {
		t.Fatalf("unpack reply: %v", err)
	}
	return r, n
}

// captureWriter is a dns.ResponseWriter that keeps what the handler writes,
// after a Pack/Unpack round trip, the way a client would receive it.
type captureWriter struct {
	tcp     bool
	replies []*dns.Msg
	wire    []int // packed size of each reply
	errs    []error
}

var (
	testUDPAddr = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53000}
	testTCPAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53000}
)

func (w *captureWriter) RemoteAddr() net.Addr {
	if w.tcp {
		return testTCPAddr
	}
	return testUDPAddr
}
func (w *captureWriter) LocalAddr() net.Addr { return w.RemoteAddr() }
func (w *captureWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		w.errs = append(w.errs, fmt.Errorf("pack: %w", err))
		return err
	}
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil {
		w.errs = append(w.errs, fmt.Errorf("unpack: %w", err))
		return err
	}
	w.replies = append(w.replies, r)
	w.wire = append(w.wire, len(b))
	return nil
}
func (w *captureWriter) Write([]byte) (int, error) { panic("handler must use WriteMsg") }
func (w *captureWriter) Close() error              { return nil }
func (w *captureWriter) TsigStatus() error         { return nil }
func (w *captureWriter) TsigTimersOnly(bool)       {}
func (w *captureWriter) Hijack()                   {}

// serve runs the handler directly and returns its one reply.
func serve(t testing.TB, s *Server, m *dns.Msg, tcp bool) *dns.Msg {
	t.Helper()
	w := &captureWriter{tcp: tcp}
	s.ServeDNS(w, m)
	if len(w.errs) > 0 || len(w.replies) != 1 {
		t.Fatalf("handler wrote %d replies, errors %v", len(w.replies), w.errs)
	}
	return w.replies[0]
}

// rrTexts renders records as "name ttl class type rdata", sorted, so that
// answers compare as sets.
func rrTexts(rrs []dns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.Join(strings.Fields(rr.String()), " "))
	}
	slices.Sort(out)
	return out
}

// addresses returns the A/AAAA addresses of an answer, in order.
func addresses(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	return out
}
