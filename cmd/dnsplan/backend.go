package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

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
	if addr == "" {
		return errors.New("backend: --addr is required") // serveHTTP would serve nothing
	}
	logger, err := newLogger(stderr, logLevel, logFormat)
	if err != nil {
		return err
	}
	logger = logger.With("component", "backend", "backend", id)
	stop, err := serveHTTP(addr, backend.New(id).Handler(), logger)
	if err != nil {
		return fmt.Errorf("backend: --addr: %w", err)
	}
	logger.Info("backend serving", "addr", addr)
	<-ctx.Done()
	logger.Info("backend stopping")
	stop()
	return nil
}
