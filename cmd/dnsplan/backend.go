package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/dnsplan/dnsplan/backend"
)

func runBackend(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := newFlagSet("backend", stderr)
	var id, addr, logLevel, logFormat string
	hostname, _ := os.Hostname()
	fs.StringVar(&id, "id", hostname, "name the backend answers GET / with; default the hostname")
	fs.StringVar(&addr, "addr", "127.0.0.1:8080", "HTTP listen address (/healthz, POST /fail, POST /recover, GET /)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "text or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if id == "" {
		return errors.New("backend: --id is required (no hostname to default to)")
	}
	logger, err := newLogger(stderr, logLevel, logFormat)
	if err != nil {
		return err
	}
	logger = logger.With("component", "backend", "backend", id)
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("backend: --addr: %w", err)
	}
	srv := &http.Server{Handler: backend.New(id).Handler(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	// The server runs until ctx ends; Shutdown below stops it.
	go func() { served <- srv.Serve(lis) }()
	logger.Info("backend serving", "addr", lis.Addr().String())
	select {
	case err := <-served:
		return fmt.Errorf("backend: %w", err)
	case <-ctx.Done():
	}
	logger.Info("backend stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
