package dnsserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/internal/rate"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// DefaultZone is the zone served when Config.Zones is empty.
const DefaultZone = "dnsplan.test."

// shutdownTimeout bounds how long Close waits for in-flight queries and
// TCP connections before giving up on them.
const shutdownTimeout = 5 * time.Second

// Lifecycle errors.
var (
	ErrStarted    = errors.New("dnsserver: already started")
	ErrNoListener = errors.New("dnsserver: no UDP or TCP listener given")
)

// Config configures a Server.
type Config struct {
	// Zones are the zones the server is authoritative for, as FQDNs.
	// Default {DefaultZone}. When zones nest, a name belongs to the most
	// specific one.
	Zones []string
	// NSNames are the NS targets served at every apex. Default: "ns1.<zone>"
	// for each zone.
	NSNames []string
	// Logger is the parent logger; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the server's metrics; nil means no metrics.
	Registerer prometheus.Registerer
	// RateLimit and RateBurst bound the UDP answers per client prefix
	// (IPv4 /24, IPv6 /56): RateLimit a second on average, RateBurst at
	// once (defaults DefaultRateLimit and twice it). Beyond them the
	// answer is truncated (TC, no records), so a real client retries
	// over TCP while a spoofed flood gains nothing: response rate
	// limiting as BIND and Knot do it.
	RateLimit float64
	RateBurst int
	// MaxTCPConns caps concurrent TCP connections (default 256; more wait
	// in the kernel's backlog); TCPIdleTimeout closes a connection that
	// sends no query for that long (default 10s).
	MaxTCPConns    int
	TCPIdleTimeout time.Duration
	// Rand is the randomness behind the weighted order of A/AAAA answers:
	// a uniformly distributed uint64 per call. It is called from concurrent
	// queries, so it must be safe for concurrent use. nil means
	// math/rand/v2's Uint64.
	Rand func() uint64
}

// Defaults of the client bounds (Config).
const (
	DefaultRateLimit      = 500
	DefaultMaxTCPConns    = 256
	DefaultTCPIdleTimeout = 10 * time.Second
)

// Server is an authoritative DNS server answering from the last view given
// to Update. It is a dns.Handler, so it can also be mounted elsewhere.
type Server struct {
	specs   []zoneSpec
	log     *slog.Logger
	rand    func() uint64
	metrics *metrics
	rrl     *rate.Limiter // UDP answers per client prefix
	// maxTCP and tcpIdle bound TCP clients (Config).
	maxTCP  int
	tcpIdle time.Duration

	// view is what queries answer from. Queries Load it once and never lock;
	// Update Stores a fully built replacement.
	view atomic.Pointer[view]

	// updateMu serializes Update, so each build sees the view it replaces
	// (for serial monotonicity and diagnostics) and two builds never race to
	// store. Queries never take it.
	updateMu sync.Mutex

	// lifeMu guards the listeners' lifecycle: Start and Close may come from
	// different goroutines (a node's run loop and its shutdown).
	lifeMu  sync.Mutex
	running []*listener
}

// listener is one miekg/dns server (UDP or TCP) and the result of its serve
// goroutine.
type listener struct {
	srv  *dns.Server
	done chan error // receives ActivateAndServe's result, then stays empty
}

// New validates cfg and returns a server that answers from an empty view
// (every zone exists, with only its SOA and NS) until the first Update.
func New(cfg Config) (*Server, error) {
	zones := cfg.Zones
	if len(zones) == 0 {
		zones = []string{DefaultZone}
	}
	var nsNames []string
	for _, ns := range cfg.NSNames {
		name := contract.CanonicalName(ns)
		if err := checkFQDN(name); err != nil {
			return nil, fmt.Errorf("dnsserver: NS name: %w", err)
		}
		nsNames = append(nsNames, name)
	}
	specs := make([]zoneSpec, 0, len(zones))
	seen := make(map[string]bool, len(zones))
	for _, z := range zones {
		apex := contract.CanonicalName(z)
		if err := checkFQDN(apex); err != nil {
			return nil, fmt.Errorf("dnsserver: zone: %w", err)
		}
		if seen[apex] {
			return nil, fmt.Errorf("dnsserver: zone %q given twice", z)
		}
		seen[apex] = true
		sp := zoneSpec{apex: apex, nsNames: nsNames}
		if len(nsNames) == 0 {
			ns := "ns1." + apex
			if apex == "." {
				ns = "ns1."
			}
			sp.nsNames = []string{ns}
		}
		specs = append(specs, sp)
	}

	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	limit := cmp.Or(cfg.RateLimit, DefaultRateLimit)
	if !(limit > 0) || cfg.RateBurst < 0 || cfg.MaxTCPConns < 0 || cfg.TCPIdleTimeout < 0 {
		return nil, errors.New("dnsserver: rate limit, burst, TCP connections and idle timeout must be positive")
	}
	s := &Server{
		specs:   specs,
		log:     logger.With("component", "dns"),
		rand:    cfg.Rand,
		rrl:     rate.New(limit, cmp.Or(cfg.RateBurst, int(2*limit))),
		maxTCP:  cmp.Or(cfg.MaxTCPConns, DefaultMaxTCPConns),
		tcpIdle: cmp.Or(cfg.TCPIdleTimeout, DefaultTCPIdleTimeout),
	}
	if s.rand == nil {
		s.rand = rand.Uint64
	}
	if cfg.Registerer != nil {
		m, err := newMetrics(cfg.Registerer)
		if err != nil {
			return nil, fmt.Errorf("dnsserver: metrics: %w", err)
		}
		s.metrics = m
	}
	s.view.Store(buildView(specs, nil, nil))
	return s, nil
}

// checkFQDN accepts a fully qualified, syntactically valid domain name.
func checkFQDN(name string) error {
	if !dns.IsFqdn(name) {
		return fmt.Errorf("%q is not fully qualified (must end in a dot)", name)
	}
	if _, ok := dns.IsDomainName(name); !ok {
		return fmt.Errorf("%q is not a valid domain name", name)
	}
	return nil
}

// Zones returns the zone apexes the server is authoritative for, in
// configuration order.
func (s *Server) Zones() []string {
	out := make([]string, len(s.specs))
	for i, sp := range s.specs {
		out[i] = sp.apex
	}
	return out
}

// Update replaces the view with one built from applied, the complete set of
// applied endpoints. Until the first Update, queries in the zones get
// SERVFAIL: the caller decides when its data is current enough to serve. The caller calls it after every state change; it is
// O(len(applied)) and never blocks queries, which keep answering from the
// previous view until the new one is stored. applied is not retained.
func (s *Server) Update(applied []*pb.AppliedEndpoint) {
	s.updateMu.Lock()
	defer s.updateMu.Unlock()

	prev := s.view.Load()
	next := buildView(s.specs, applied, prev)
	for p := range next.problems {
		if !prev.problems[p] {
			s.log.Error("applied record not served", "problem", p)
		}
	}
	// Invariant I1 says a node's answers never go back to an older
	// generation. The state machine enforces it; this only makes a breach
	// loud where it would be served.
	for name, gen := range next.generations {
		if old, ok := prev.generations[name]; ok && gen < old {
			s.log.Error("applied generation went backwards", "endpoint", name, "from", old, "to", gen)
		}
	}
	for name := range prev.generations {
		if _, ok := next.generations[name]; !ok && !next.outOfZone[name] {
			s.log.Warn("applied endpoint disappeared from the view", "endpoint", name)
		}
	}
	for name := range next.outOfZone {
		if !prev.outOfZone[name] {
			s.log.Warn("applied endpoint outside every zone, not served", "endpoint", name, "zones", s.Zones())
		}
	}
	next.loaded = true
	s.view.Store(next)
}

// Start serves DNS on udp and tcp (either may be nil, not both) and returns
// once both are accepting queries. It takes ownership of the listeners:
// Close closes them, and so does a failed Start.
func (s *Server) Start(udp net.PacketConn, tcp net.Listener) (err error) {
	if udp == nil && tcp == nil {
		return ErrNoListener
	}
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.running != nil {
		return ErrStarted
	}
	defer func() {
		if err != nil {
			if udp != nil {
				udp.Close()
			}
			if tcp != nil {
				tcp.Close()
			}
		}
	}()

	var started []*listener
	for _, srv := range []*dns.Server{s.newDNSServer(udp, nil), s.newDNSServer(nil, tcp)} {
		if srv == nil {
			continue
		}
		l, err := s.serve(srv)
		if err != nil {
			shutdown(started)
			return err
		}
		started = append(started, l)
	}
	s.running = started
	s.log.Info("dns serving", append(listenAddrs(udp, tcp), "zones", s.Zones())...)
	return nil
}

// newDNSServer returns a miekg/dns server for one of pc or l, or nil.
func (s *Server) newDNSServer(pc net.PacketConn, l net.Listener) *dns.Server {
	if pc == nil && l == nil {
		return nil
	}
	if l != nil {
		l = limitListener(l, s.maxTCP)
	}
	return &dns.Server{
		PacketConn:    pc,
		Listener:      l,
		Handler:       s,
		UDPSize:       dns.DefaultMsgSize, // read buffer for queries, EDNS padding included
		MsgAcceptFunc: acceptQuery,
		IdleTimeout:   func() time.Duration { return s.tcpIdle },
	}
}

// serve runs srv in a goroutine and waits until it is listening or failed.
func (s *Server) serve(srv *dns.Server) (*listener, error) {
	ready := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(ready) }
	l := &listener{srv: srv, done: make(chan error, 1)}
	// The serve goroutine lives until Close shuts srv down; its result goes
	// to done so Close can wait for it.
	go func() { l.done <- srv.ActivateAndServe() }()
	select {
	case <-ready:
		return l, nil
	case err := <-l.done:
		return nil, fmt.Errorf("dnsserver: serve: %w", err)
	}
}

// acceptQuery replaces miekg/dns's default gate, which would answer
// FORMERR and NOTIMP itself before the handler sees the query: everything
// but responses now reaches ServeDNS, so one place decides every rcode and
// the metrics count it. Responses (QR set) are dropped unanswered, as the
// default does: answering a response invites two servers to bounce errors
// at each other. ServeDNS still answers FORMERR to QR when called directly.
func acceptQuery(h dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if h.Bits&qr != 0 {
		return dns.MsgIgnore
	}
	return dns.MsgAccept
}

// Close stops serving and closes the listeners given to Start. The view is
// kept: ServeDNS still answers. Close without Start is a no-op.
func (s *Server) Close() error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	err := shutdown(s.running)
	s.running = nil
	return err
}

// shutdown stops the listeners and waits for their serve goroutines.
func shutdown(ls []*listener) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var errs []error
	for _, l := range slices.Backward(ls) {
		if err := l.srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	for _, l := range ls {
		select {
		case err := <-l.done:
			if err != nil {
				errs = append(errs, err)
			}
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("dnsserver: listener did not stop: %w", ctx.Err()))
		}
	}
	return errors.Join(errs...)
}

// listenAddrs names the addresses served on, for the start log.
func listenAddrs(udp net.PacketConn, tcp net.Listener) []any {
	var kv []any
	if udp != nil {
		kv = append(kv, "udp", udp.LocalAddr().String())
	}
	if tcp != nil {
		kv = append(kv, "tcp", tcp.Addr().String())
	}
	return kv
}

// limitListener accepts at most n connections at once: Accept waits for a
// slot, and the connections beyond wait in the kernel's backlog.
func limitListener(l net.Listener, n int) net.Listener {
	return &limitedListener{Listener: l, slots: make(chan struct{}, n)}
}

type limitedListener struct {
	net.Listener
	slots chan struct{}
}

func (l *limitedListener) Accept() (net.Conn, error) {
	l.slots <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &slotConn{Conn: c, free: func() { <-l.slots }}, nil
}

// slotConn gives its slot back, once, when closed.
type slotConn struct {
	net.Conn
	once sync.Once
	free func()
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.free)
	return err
}
