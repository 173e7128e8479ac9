package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/contract"
)

// Defaults for Config's watch fields.
const (
	DefaultWatchSendTimeout     = 10 * time.Second
	DefaultMaxWatchers          = 1024
	DefaultMaxWatchersPerClient = 64
)

// Why a watch stream was ended by the node. Each error carries its gRPC
// status (see watchEnd), so the one conversion in toStatus passes it on.
var (
	// ErrWatchStalled: the client read nothing for the send timeout.
	ErrWatchStalled = errors.New("watch stream stalled")
	// ErrTooManyWatchers: the node's or the client's cap of open watch
	// streams is reached.
	ErrTooManyWatchers = errors.New("too many watch streams")
	// ErrOutOfTouch: the node is not the leader and has not heard from
	// one for a few election timeouts, so its replica may miss plans the
	// cluster has committed.
	ErrOutOfTouch = errors.New("node out of touch with the leader")
)

// watchEnd is an error that ends a watch stream with a gRPC code and, if
// reason is set, a google.rpc.ErrorInfo reason clients can read with
// client.Reason.
type watchEnd struct {
	err    error
	code   codes.Code
	reason contract.Reason
}

func (e *watchEnd) Error() string { return e.err.Error() }
func (e *watchEnd) Unwrap() error { return e.err }

func (e *watchEnd) GRPCStatus() *status.Status {
	st := status.New(e.code, e.err.Error())
	if e.reason != "" {
		if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: string(e.reason), Domain: contract.ErrorDomain}); err == nil {
			st = d
		}
	}
	return st
}

// watchHub serves every watch stream of a node. It admits streams under
// the caps, and sends on each stream's behalf so that two rules hold:
//
//   - No network I/O under the state lock. What to send is collected
//     under the read lock (stored values are immutable pointers), the
//     lock is released, and only then is anything sent. A send blocked
//     by a client that stopped reading can therefore never hold up
//     Apply, which needs the write lock.
//   - No stream holds anything for longer than the send timeout. One
//     goroutine per stream makes the blocking SendMsg calls; the handler
//     waits for each with a deadline and, when it passes, returns, and
//     the client's connection is closed. Returning alone is not enough:
//     gRPC queues the stream's status behind the message it could not
//     send, and keeps both for as long as the client stays connected
//     without reading (it still answers keepalive pings), so a client
//     that opened and stalled stream after stream would pin one message
//     of up to the plan limit each. Closing the connection frees them and
//     unblocks the send; the client reconnects and resumes from the last
//     value it received.
type watchHub struct {
	c            core
	conns        *connTracker
	sendTimeout  time.Duration
	max          int
	maxPerClient int
	// outOfTouchAfter is how long a follower may go without hearing from
	// a leader before its watches end (see outOfTouch).
	outOfTouchAfter time.Duration

	// mu guards open and perClient, the streams open now, in total and
	// by client address.
	mu        sync.Mutex
	open      int
	perClient map[string]int

	streams *prometheus.GaugeVec   // open streams by watch
	ended   *prometheus.CounterVec // streams the node ended, by watch and reason
}

// watchLimits are a hub's limits (Config's, defaults for zero values).
type watchLimits struct {
	sendTimeout     time.Duration
	max, perClient  int
	outOfTouchAfter time.Duration
}

// watchLimitsOf reads a node's configuration.
func watchLimitsOf(cfg Config) watchLimits {
	return watchLimits{
		sendTimeout: cmp.Or(cfg.WatchSendTimeout, DefaultWatchSendTimeout),
		max:         cmp.Or(cfg.MaxWatchers, DefaultMaxWatchers),
		perClient:   cmp.Or(cfg.MaxWatchersPerClient, DefaultMaxWatchersPerClient),
		// A few election timeouts: longer than an election takes, so a
		// healthy cluster's leader change does not end watches.
		outOfTouchAfter: 3 * max(cmp.Or(cfg.HeartbeatTimeout, time.Second), cmp.Or(cfg.ElectionTimeout, time.Second)),
	}
}

func newWatchHub(c core, conns *connTracker, lim watchLimits, reg prometheus.Registerer) *watchHub {
	h := &watchHub{
		c:               c,
		conns:           conns,
		sendTimeout:     lim.sendTimeout,
		max:             lim.max,
		maxPerClient:    lim.perClient,
		perClient:       map[string]int{},
		outOfTouchAfter: lim.outOfTouchAfter,
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dnsplan_watch_streams",
			Help: "Watch streams open on this node, by watch (plans, applied).",
		}, []string{"watch"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsplan_watch_streams_ended_total",
			Help: "Watch streams this node ended or refused, by watch and reason (stalled, out_of_touch, limit).",
		}, []string{"watch", "reason"}),
	}
	reg.MustRegister(h.streams, h.ended)
	return h
}

// admit counts a new stream against the caps, or refuses it with
// RESOURCE_EXHAUSTED (reason WATCH_LIMIT: the client may try another
// node, or later). release must be called when the stream ends.
func (h *watchHub) admit(ctx context.Context, what string) (release func(), err error) {
	who := clientKey(ctx)
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.open >= h.max:
		err = fmt.Errorf("%w: node %s serves %d, its limit; resume on another node", ErrTooManyWatchers, h.c.ID(), h.open)
	case h.perClient[who] >= h.maxPerClient:
		err = fmt.Errorf("%w: client %s has %d open on node %s, the limit per client", ErrTooManyWatchers, who, h.perClient[who], h.c.ID())
	}
	if err != nil {
		h.ended.WithLabelValues(what, "limit").Inc()
		h.c.logger().Warn("watch refused", "watch", what, "client", who, "err", err)
		return nil, &watchEnd{err: err, code: codes.ResourceExhausted, reason: contract.ReasonWatchLimit}
	}
	h.open++
	h.perClient[who]++
	h.streams.WithLabelValues(what).Inc()
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.open--
		if h.perClient[who]--; h.perClient[who] <= 0 {
			delete(h.perClient, who)
		}
		h.streams.WithLabelValues(what).Dec()
	}, nil
}

// clientKey names a call's client for the per-client limits: its
// identity when the node runs TLS, else its IP address (every connection
// of one host counts together).
func clientKey(ctx context.Context) string {
	if id, ok := ctx.Value(callerCtx{}).(auth.Identity); ok {
		return id.String()
	}
	return clientAddr(ctx)
}

// clientAddr is a call's client IP address.
func clientAddr(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	if tcp, ok := p.Addr.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	return p.Addr.String()
}

// peerAddr is the address of a stream's connection, as the connection
// tracker knows it.
func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// connTracker is the gRPC listener, keeping every accepted connection by
// its remote address so that one can be closed from a handler.
type connTracker struct {
	net.Listener
	mu    sync.Mutex
	conns map[string]net.Conn
}

func newConnTracker(lis net.Listener) *connTracker {
	return &connTracker{Listener: lis, conns: map[string]net.Conn{}}
}

func (t *connTracker) Accept() (net.Conn, error) {
	c, err := t.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, t: t, key: c.RemoteAddr().String()}
	t.mu.Lock()
	t.conns[tc.key] = tc
	t.mu.Unlock()
	return tc, nil
}

// close closes the connection from addr, if it is open.
func (t *connTracker) close(addr string) {
	t.mu.Lock()
	c := t.conns[addr]
	t.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

type trackedConn struct {
	net.Conn
	t    *connTracker
	key  string
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.t.mu.Lock()
		if c.t.conns[c.key] == net.Conn(c) {
			delete(c.t.conns, c.key)
		}
		c.t.mu.Unlock()
	})
	return c.Conn.Close()
}

// serve runs one watch stream: each time the state changes, collect
// picks (under the read lock, without I/O) the messages the client has
// not had yet, and they are sent after the lock is released. It returns
// when a send fails or stalls, the node is out of touch with the leader,
// the client goes, or the node closes.
// collect keeps its own resume point and may advance it as it collects:
// a message collected but not sent ends the stream, and the client
// resumes from what it last received.
func (h *watchHub) serve(stream grpc.ServerStream, what string, collect func(*fsm.State) []any) error {
	ctx := stream.Context()
	release, err := h.admit(ctx, what)
	if err != nil {
		return err
	}
	defer release()
	out := newStreamSender(stream)
	defer out.close()
	check := time.NewTicker(h.outOfTouchAfter / 3)
	defer check.Stop()
	for {
		if err := h.outOfTouch(); err != nil {
			h.ended.WithLabelValues(what, "out_of_touch").Inc()
			h.c.logger().Warn("ending watch stream: out of touch with the leader", "watch", what, "client", clientAddr(ctx), "err", err)
			return err
		}
		// The channel is taken before the state is read, so no change
		// between two collections is missed.
		ch, _ := h.c.changed()
		var msgs []any
		h.c.read(func(s *fsm.State) { msgs = collect(s) })
		for _, m := range msgs {
			if err := out.send(ctx, h.c.done(), m, h.sendTimeout); err != nil {
				if errors.Is(err, ErrWatchStalled) {
					h.ended.WithLabelValues(what, "stalled").Inc()
					h.c.logger().Warn("watch stream stalled; closing the client's connection", "watch", what, "client", peerAddr(ctx), "timeout", h.sendTimeout)
					// The stream's status goes down with the connection;
					// the log line and the metric say why.
					h.conns.close(peerAddr(ctx))
				}
				return err
			}
		}
		select {
		case <-ch:
		case <-check.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-h.c.done():
			return status.Error(codes.Unavailable, "node is shutting down; resume on another node")
		}
	}
}

// outOfTouch ends a watch served by a node cut off from the quorum. Such
// a node's replica stops advancing while the cluster commits new plans; a
// watch it serves would go quiet, not fail, and a lease holder watching
// through it would apply nothing while keeping its lease (its renewals
// fail over to other nodes). Ending the watch with UNAVAILABLE sends the
// client to another node. The leader is in touch by definition: one that
// loses its quorum steps down within the leader lease timeout.
func (h *watchHub) outOfTouch() error {
	leads, last, leader := h.c.leaderContact()
	if leads {
		return nil
	}
	since := time.Since(last)
	if since <= h.outOfTouchAfter {
		return nil
	}
	heard := "never"
	if !last.IsZero() {
		heard = since.Round(time.Millisecond).String() + " ago"
	}
	if leader == "" {
		leader = "none known"
	}
	return &watchEnd{
		err: fmt.Errorf("%w: node %s last heard from a leader %s (limit %s; leader: %s); resume on another node",
			ErrOutOfTouch, h.c.ID(), heard, h.outOfTouchAfter, leader),
		code: codes.Unavailable,
	}
}

// streamSender owns the one goroutine that calls SendMsg on a stream
// (gRPC allows one sender at a time), so the handler can wait for a send
// with a deadline and return without it.
type streamSender struct {
	stream grpc.ServerStream
	msgs   chan any
	// sent carries the result of each send. It has room for one, so a
	// send that finishes after the handler gave up on it does not block
	// the goroutine.
	sent chan error
}

func newStreamSender(stream grpc.ServerStream) *streamSender {
	s := &streamSender{stream: stream, msgs: make(chan any), sent: make(chan error, 1)}
	// The goroutine may outlive the handler, blocked in a send: gRPC
	// unblocks it when it ends the stream after the handler returns. It
	// exits once msgs is closed.
	go func() {
		for m := range s.msgs {
			s.sent <- s.stream.SendMsg(m)
		}
	}()
	return s
}

// send sends m, waiting at most timeout for the client to make room, and
// no longer than ctx lasts or until closing is closed (the node stops).
// The goroutine is idle when send is called: every earlier send was
// waited for, or the stream is being ended.
func (s *streamSender) send(ctx context.Context, closing <-chan struct{}, m any, timeout time.Duration) error {
	s.msgs <- m
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-s.sent:
		return err
	case <-t.C:
		return &watchEnd{
			err:  fmt.Errorf("%w: the client read nothing for %s; resume from the last value received", ErrWatchStalled, timeout),
			code: codes.Unavailable,
		}
	case <-ctx.Done():
		return ctx.Err()
	case <-closing:
		return status.Error(codes.Unavailable, "node is shutting down; resume on another node")
	}
}

// close lets the goroutine exit once its current send, if any, returns.
func (s *streamSender) close() { close(s.msgs) }
