package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer for one writer and one reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// dnsplan dev runs on mutual TLS with a CA of its own, and the commands
// it prints work: with the exported certificate ctl reaches the cluster,
// without it ctl reaches nothing. (It uses the contract's fixed local
// ports, as users do.)
func TestDevPrintsCommandsThatWork(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--data-dir", t.TempDir(), "--log-level", "error"}, &out, io.Discard)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev: %v", err)
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "try:") {
		select {
		case err := <-done:
			t.Fatalf("dev stopped: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev did not start:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	var export string
	for _, line := range strings.Split(out.String(), "\n") {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "export DNSPLAN_TLS_CA=") {
			export = strings.TrimPrefix(l, "export ")
		}
	}
	if export == "" {
		t.Fatalf("dev printed no export line:\n%s", out.String())
	}
	for _, kv := range strings.Fields(export) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	var status bytes.Buffer
	if err := run(context.Background(), []string{"ctl", "--timeout", "20s", "health"}, &status, io.Discard); err != nil {
		t.Fatalf("ctl health with dev's exported certificate: %v", err)
	}
	for _, k := range []string{"DNSPLAN_TLS_CA", "DNSPLAN_TLS_CERT", "DNSPLAN_TLS_KEY"} {
		os.Unsetenv(k)
	}
	if err := run(context.Background(), []string{"ctl", "--timeout", "2s", "health"}, io.Discard, io.Discard); err == nil {
		t.Fatal("ctl without a certificate reached dev's cluster")
	}
}
