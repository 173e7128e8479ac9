package enactor

import (
	"context"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/client"
)

// PauseGate freezes an enactor the way pausing its container would, so
// tests can show what the cluster does with a holder that stopped for a
// while and then carries on as if nothing happened. While paused, every
// step that would send something waits at the gate: the enactor's own
// steps (apply, read-back, clean-up) and, through ClientOption, every RPC
// of the client it was built into (lease acquire, renew and release, new
// streams). Messages already arriving on an open watch stream are still
// delivered, as bytes already in a frozen process's socket are: a paused
// enactor can learn of a plan, decide to apply it, and be held right
// before sending, with the token it holds at that moment.
//
// A held RPC gives up when its own context ends (a renewal's deadline is
// the lease's local expiry, so the lease is then lost locally without
// anything being sent). A held apply waits for Resume or for the enactor
// to stop, and is then sent unchanged.
type PauseGate struct {
	// mu guards resume: nil while running; while paused, an open channel
	// that Resume closes to release every waiter at once.
	mu      sync.Mutex
	resume  chan struct{}
	waiting atomic.Int64
}

// NewPauseGate returns an open gate.
func NewPauseGate() *PauseGate { return &PauseGate{} }

// Pause closes the gate: steps that reach it wait.
func (g *PauseGate) Pause() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.resume == nil {
		g.resume = make(chan struct{})
	}
}

// Resume opens the gate and releases every waiting step.
func (g *PauseGate) Resume() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.resume != nil {
		close(g.resume)
		g.resume = nil
	}
}

// Paused reports whether the gate is closed.
func (g *PauseGate) Paused() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.resume != nil
}

// Waiting is how many steps and RPCs are held at the gate now.
func (g *PauseGate) Waiting() int { return int(g.waiting.Load()) }

// wait returns at once while the gate is open; otherwise when it opens
// (nil) or ctx ends (ctx's error).
func (g *PauseGate) wait(ctx context.Context) error {
	g.mu.Lock()
	resume := g.resume
	g.mu.Unlock()
	if resume == nil {
		return nil
	}
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	select {
	case <-resume:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ClientOption makes every RPC of a client wait at the gate: unary calls
// before they are sent, streams before they are opened. Build the
// enactor's client with it to freeze lease renewals too.
func (g *PauseGate) ClientOption() client.Option {
	return client.WithDialOptions(
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if err := g.wait(ctx); err != nil {
				return status.FromContextError(err).Err()
			}
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			if err := g.wait(ctx); err != nil {
				return nil, status.FromContextError(err).Err()
			}
			return streamer(ctx, desc, cc, method, opts...)
		}),
	)
}
