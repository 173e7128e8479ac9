// Package backend is a sample load-balancer target for demos and tests: a
// tiny HTTP server whose health an operator (or a test) switches by hand.
// GET /healthz answers 200 "ok" while it is healthy and 503 after POST
// /fail; POST /recover makes it healthy again; GET / names the backend, so
// a client can tell which one answered. The planner's health checks probe
// /healthz, so failing a backend is how a demo takes a load balancer out of
// DNS.
package backend

import (
	"fmt"
	"net/http"
	"sync/atomic"
)

// Backend is one sample target. It is safe for concurrent use.
type Backend struct {
	id string
	// failed is read by every health check and written by /fail and
	// /recover; an atomic keeps that free of locks.
	failed atomic.Bool
}

// New returns a healthy backend named id.
func New(id string) *Backend { return &Backend{id: id} }

// ID is the name the backend answers with.
func (b *Backend) ID() string { return b.id }

// Fail makes /healthz answer 503 until Recover.
func (b *Backend) Fail() { b.failed.Store(true) }

// Recover makes /healthz answer 200 again.
func (b *Backend) Recover() { b.failed.Store(false) }

// Healthy reports whether /healthz answers 200.
func (b *Backend) Healthy() bool { return !b.failed.Load() }

// Handler serves the backend's endpoints.
func (b *Backend) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !b.Healthy() {
			http.Error(w, "failing", http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /fail", func(w http.ResponseWriter, _ *http.Request) {
		b.Fail()
		_, _ = fmt.Fprintf(w, "%s: failing\n", b.id)
	})
	mux.HandleFunc("POST /recover", func(w http.ResponseWriter, _ *http.Request) {
		b.Recover()
		_, _ = fmt.Fprintf(w, "%s: healthy\n", b.id)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		state := "healthy"
		if !b.Healthy() {
			state = "failing"
		}
		_, _ = fmt.Fprintf(w, "backend %s (%s)\n", b.id, state)
	})
	return mux
}
