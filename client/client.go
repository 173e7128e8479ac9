// Package client is how every dnsplan program outside a node (ctl, planner,
// enactor, tests) talks to a cluster: it knows the gRPC addresses of all
// nodes, finds one that answers, follows "the leader is over there" hints,
// retries with backoff within a budget, and resumes broken watch streams
// without gaps. It owns nothing else, and imports no other dnsplan package
// but the contract and the generated protobuf code.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/internal/retry"
)

var (
	// ErrNoAddresses is returned by New when it is given no node address.
	ErrNoAddresses = errors.New("client: no node addresses")
	// ErrClosed is returned by calls made after Close.
	ErrClosed = errors.New("client: closed")
	// ErrBudgetExhausted is wrapped by the error of a call that kept failing
	// with codes.Unavailable until the retry budget ran out. The error also
	// carries the last gRPC status, so status.Code still reports it.
	ErrBudgetExhausted = errors.New("retry budget exhausted")
)

// Defaults for the options.
const (
	DefaultCallTimeout = 5 * time.Second
	DefaultRetryBudget = 15 * time.Second
	DefaultMinBackoff  = 50 * time.Millisecond
	DefaultMaxBackoff  = time.Second
)

// Client keepalive (see conn).
const (
	keepaliveTime    = 20 * time.Second
	keepaliveTimeout = 10 * time.Second
)

type options struct {
	callTimeout time.Duration
	retryBudget time.Duration
	minBackoff  time.Duration
	maxBackoff  time.Duration
	logger      *slog.Logger
	tls         *tls.Config
	dialOptions []grpc.DialOption
}

// Option configures a Client.
type Option func(*options)

// WithCallTimeout sets the deadline of one attempt of a unary call
// (default 5s). Streams have no per-attempt deadline.
func WithCallTimeout(d time.Duration) Option { return func(o *options) { o.callTimeout = d } }

// WithRetryBudget sets how long one unary call may keep retrying, across
// attempts and nodes, before it gives up with codes.Unavailable
// (default 15s). The caller's context may end it sooner.
func WithRetryBudget(d time.Duration) Option { return func(o *options) { o.retryBudget = d } }

// WithBackoff sets the pause between attempts: it starts at first, doubles
// after each failure up to limit, and is jittered (default 50ms to 1s).
func WithBackoff(first, limit time.Duration) Option {
	return func(o *options) { o.minBackoff, o.maxBackoff = first, limit }
}

// WithLogger sets the logger; retries are logged at debug level, broken
// streams at info. The default discards everything.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithTLS makes every connection mutual TLS with cfg (auth.Loader's
// ClientConfig: the caller's certificate, the cluster CA). Without it the
// client speaks plaintext, which only a node run with --insecure accepts.
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// WithDialOptions adds gRPC dial options to every connection, after the
// client's own (insecure credentials, fast reconnects), so they can
// override them.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOptions = append(o.dialOptions, opts...) }
}

// Client reaches a dnsplan cluster through any of its nodes. It is safe for
// concurrent use. Connections are made lazily, one per node address, and
// kept until Close.
type Client struct {
	opts options
	log  *slog.Logger

	// mu guards the fields below. It is never held during a call: calls
	// only take it to pick an address or a connection.
	mu sync.Mutex
	// addrs is every node address known: the ones given to New, then
	// leader hints that named an address not among them.
	addrs []string
	conns map[string]*grpc.ClientConn
	// sticky is the last address that answered; calls start there, so a
	// client that found the leader keeps using it.
	sticky string
	closed bool
}

// New returns a client for the cluster whose nodes serve gRPC at addrs. It
// does not connect: the first call does.
func New(addrs []string, opts ...Option) (*Client, error) {
	o := options{
		callTimeout: DefaultCallTimeout,
		retryBudget: DefaultRetryBudget,
		minBackoff:  DefaultMinBackoff,
		maxBackoff:  DefaultMaxBackoff,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.minBackoff <= 0 {
		o.minBackoff = time.Millisecond
	}
	if o.maxBackoff < o.minBackoff {
		o.maxBackoff = o.minBackoff
	}
	c := &Client{
		opts:  o,
		log:   o.logger.With("component", "client"),
		conns: map[string]*grpc.ClientConn{},
	}
	for _, a := range addrs {
		if a != "" && !slices.Contains(c.addrs, a) {
			c.addrs = append(c.addrs, a)
		}
	}
	if len(c.addrs) == 0 {
		return nil, ErrNoAddresses
	}
	// Parse every given address now, so a typo fails here rather than as
	// an endless "unavailable" later.
	for _, a := range c.addrs {
		if _, err := c.conn(a); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Close closes every connection. Calls in flight fail; later calls return
// ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	conns := c.conns
	c.conns, c.closed = map[string]*grpc.ClientConn{}, true
	c.mu.Unlock()
	var errs []error
	for _, cc := range conns {
		errs = append(errs, cc.Close())
	}
	return errors.Join(errs...)
}

// Addrs returns every node address the client knows: those given to New,
// then any learned from leader hints.
func (c *Client) Addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.addrs)
}

// conn returns the connection to addr, creating it on first use.
func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	creds := insecure.NewCredentials()
	if c.opts.tls != nil {
		creds = credentials.NewTLS(c.opts.tls)
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		MessageLimits(),
		// Ping a connection quiet for keepaliveTime (a watch waiting for
		// the next plan) and drop it if its node does not answer within
		// keepaliveTimeout: a node that vanished without closing the
		// connection then breaks the watch, which resumes elsewhere.
		// Nodes refuse pings more frequent than every 10s.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		// gRPC's default reconnect backoff grows to two minutes; a node
		// that restarts should be usable again within seconds, since the
		// client fails over rather than waiting on one connection.
		// MinConnectTimeout must be set with it: left zero, a connection
		// attempt gets only the backoff delay (100ms), too little for a
		// busy machine.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   2 * time.Second,
			},
			MinConnectTimeout: c.opts.callTimeout,
		}),
	}
	cc, err := grpc.NewClient(addr, append(dial, c.opts.dialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("client: node address %q: %w", addr, err)
	}
	c.conns[addr] = cc
	return cc, nil
}

// first is the address a new call starts with: the last one that answered.
func (c *Client) first() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sticky != "" {
		return c.sticky
	}
	return c.addrs[0]
}

func (c *Client) remember(addr string) {
	c.mu.Lock()
	c.sticky = addr
	c.mu.Unlock()
}

// next picks the address to try after failed: the leader hint when there
// is one naming another node (learning it if new), else the address after
// failed in the list.
func (c *Client) next(failed, hint string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if hint != "" && hint != failed {
		if !slices.Contains(c.addrs, hint) {
			c.addrs = append(c.addrs, hint)
		}
		return hint
	}
	i := slices.Index(c.addrs, failed)
	return c.addrs[(i+1)%len(c.addrs)] // i == -1 gives the first address
}

// forget drops an address that cannot be dialled from the rotation.
func (c *Client) forget(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.addrs) > 1 {
		c.addrs = slices.DeleteFunc(c.addrs, func(a string) bool { return a == addr })
	}
}

// hintConn is the connection handed to a call closure. It adds a trailer
// option to every call made through it, so Do can read the leader hint of
// a failed call without the closure having to pass anything along.
type hintConn struct {
	cc      *grpc.ClientConn
	trailer *metadata.MD
}

func (h hintConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return h.cc.Invoke(ctx, method, args, reply, append(slices.Clip(opts), grpc.Trailer(h.trailer))...)
}

func (h hintConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return h.cc.NewStream(ctx, desc, method, append(slices.Clip(opts), grpc.Trailer(h.trailer))...)
}

// leaderHint reads the leader's address from a failed call's trailer.
func leaderHint(md metadata.MD) string {
	for _, v := range md.Get(contract.LeaderTrailer) {
		if v != "" {
			return v
		}
	}
	return ""
}

// Do runs call against the cluster until a node answers. call gets a
// context carrying the per-attempt deadline and a connection to one node;
// it typically wraps conn in a generated client (pb.NewPlanServiceClient)
// and makes one RPC. Every call made through conn records the response
// trailer, from which Do reads the contract.LeaderTrailer hint: the closure passes
// nothing extra.
//
// Do retries only when the node could not serve the call: codes.Unavailable
// (no leader, not the leader, node down) or the per-attempt deadline
// expiring while ctx is still alive. It then tries the hinted leader if the
// node named one, else the next address, pausing with jittered exponential
// backoff, until the retry budget or ctx runs out. Every other error is the
// cluster's answer (InvalidArgument, FailedPrecondition, NotFound, …) and is
// returned at once, unchanged.
//
// An Unavailable or a deadline can come after the node received the call,
// so a retried write may have taken effect twice; callers of writes that
// are not idempotent must tolerate that.
func Do[T any](ctx context.Context, c *Client, call func(ctx context.Context, conn grpc.ClientConnInterface) (T, error)) (T, error) {
	var zero T
	start := time.Now()
	giveUpAt := start.Add(c.opts.retryBudget)
	addr := c.first()
	pace := retry.Backoff{First: c.opts.minBackoff, Limit: c.opts.maxBackoff}
	followedHint := false
	var lastErr error
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return zero, c.gaveUp(err, lastErr, attempt-1, addr, start)
		}
		cc, err := c.conn(addr)
		if err != nil {
			if errors.Is(err, ErrClosed) {
				return zero, err
			}
			// Only a learned hint can fail to parse (New checked the
			// rest): drop it and carry on with the list.
			lastErr = status.Error(codes.Unavailable, err.Error())
			bad := addr
			addr = c.next(bad, "")
			c.forget(bad)
			continue
		}
		timeout := min(c.opts.callTimeout, time.Until(giveUpAt))
		callCtx, cancel := context.WithTimeout(ctx, timeout)
		var trailer metadata.MD
		v, err := call(callCtx, hintConn{cc: cc, trailer: &trailer})
		cancel()
		if err != nil && ctx.Err() != nil && endedByContext(err) {
			// The caller's context ended the call: say so, so that
			// errors.Is(err, ctx.Err()) holds whichever way gRPC put it.
			return zero, c.gaveUp(ctx.Err(), err, attempt, addr, start)
		}
		if err == nil || !retryable(ctx, err) {
			// A business error is an answer too: this node works.
			c.remember(addr)
			return v, err
		}
		lastErr = err
		hint := leaderHint(trailer)
		c.log.Debug("call failed, retrying", "addr", addr, "attempt", attempt,
			"code", status.Code(err), "err", err, "leader_hint", hint)
		failed := addr
		addr = c.next(failed, hint)
		// Go straight to a newly named leader once; pause otherwise, so
		// nodes pointing at each other during an election do not spin.
		if hint != "" && hint != failed && !followedHint {
			followedHint = true
			continue
		}
		followedHint = false
		d := pace.Pause()
		if time.Now().Add(d).After(giveUpAt) {
			return zero, c.gaveUp(ErrBudgetExhausted, lastErr, attempt, failed, start)
		}
		if err := retry.Sleep(ctx, d); err != nil {
			return zero, c.gaveUp(err, lastErr, attempt, failed, start)
		}
	}
}

// retryable reports whether err means "this node could not serve the call
// now" rather than an answer.
func retryable(ctx context.Context, err error) bool {
	switch status.Code(err) {
	case codes.Unavailable:
		return true
	case codes.DeadlineExceeded:
		// Only our per-attempt deadline is worth retrying; the caller's is
		// final.
		return ctx.Err() == nil
	}
	return false
}

// endedByContext reports whether err is what gRPC returns when a call's
// context ends (or the connection went while it did).
func endedByContext(err error) bool {
	switch status.Code(err) {
	case codes.DeadlineExceeded, codes.Canceled, codes.Unavailable:
		return true
	}
	return false
}

// GiveUpError is returned by Do when it stops retrying. It wraps why
// (ErrBudgetExhausted, or the context's error) and the last error a node
// returned, and carries a gRPC status so status.Code(err) stays meaningful:
// Unavailable when the budget ran out or the last node could not serve the
// call (the cluster had no reachable leader, the contract's UNAVAILABLE);
// otherwise the context's code (DeadlineExceeded or Canceled).
type GiveUpError struct {
	Cause    error         // ErrBudgetExhausted, context.Canceled or context.DeadlineExceeded
	Last     error         // the last attempt's error; nil if no attempt was made
	Attempts int           // attempts made
	Addr     string        // the address of the last attempt
	Elapsed  time.Duration // time spent
}

func (e *GiveUpError) Error() string {
	if e.Last == nil {
		return e.Cause.Error()
	}
	return fmt.Sprintf("%v after %d attempts in %s; last from %s: %s",
		e.Cause, e.Attempts, e.Elapsed.Round(time.Millisecond), e.Addr, status.Convert(e.Last).Message())
}

func (e *GiveUpError) Unwrap() []error {
	if e.Last == nil {
		return []error{e.Cause}
	}
	return []error{e.Cause, e.Last}
}

// GRPCStatus makes status.Code and status.FromError report the code
// described on GiveUpError, with this error's message.
func (e *GiveUpError) GRPCStatus() *status.Status {
	code := status.FromContextError(e.Cause).Code()
	if errors.Is(e.Cause, ErrBudgetExhausted) || status.Code(e.Last) == codes.Unavailable {
		code = codes.Unavailable
	}
	return status.New(code, e.Error())
}

func (c *Client) gaveUp(cause, last error, attempts int, addr string, start time.Time) error {
	err := &GiveUpError{Cause: cause, Last: last, Attempts: attempts, Addr: addr, Elapsed: time.Since(start)}
	if last != nil {
		c.log.Debug("giving up", "err", err)
	}
	return err
}
