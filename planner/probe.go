package planner

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// maxConcurrentProbes bounds the probes in flight at once, so a large
// inventory cannot open thousands of sockets in one burst. Each probe ends
// within the probe timeout, so a round of n distinct checks takes at most
// about ceil(n/maxConcurrentProbes) timeouts; the planning loop never waits
// for a round, it plans on the last results.
const maxConcurrentProbes = 64

// prober runs one health check.
type prober struct {
	timeout time.Duration
	http    *http.Client
	dialer  net.Dialer
}

func newProber(timeout time.Duration) *prober {
	tr := &http.Transport{
		Proxy: nil, // a health check goes straight to the target
		// A fresh connection per probe: a kept-alive one could outlive a
		// listener that no longer accepts, and report a dead target alive.
		DisableKeepAlives:     true,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
	return &prober{
		timeout: timeout,
		http: &http.Client{
			Transport: tr,
			Timeout:   timeout,
			// The check's own answer counts: a redirect is not 2xx, and
			// following it would probe something else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// probe runs c once within the probe timeout; nil means healthy.
func (p *prober) probe(ctx context.Context, c check) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	switch c.kind {
	case checkHTTP:
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "dnsplan-planner")
		resp, err := p.http.Do(req)
		if err != nil {
			return err
		}
		// Reading a little lets the server finish cleanly; the body says
		// nothing the status does not.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	case checkTCP:
		conn, err := p.dialer.DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	return nil
}

// targetHealth is one target's health with rise/fall hysteresis.
type targetHealth struct {
	check   string
	known   bool // at least one probe result (always, without a check)
	healthy bool
	// streak counts consecutive results that disagree with healthy.
	streak int
}

// observe records one probe result. The first result sets the state at
// once (a planner that just started should not wait rise probes to learn
// that a target works); after that a healthy target turns unhealthy only
// after fall consecutive failures, an unhealthy one healthy after rise
// consecutive successes, so one lost probe does not flap DNS. It reports
// whether the state changed.
func (h *targetHealth) observe(err error, rise, fall int) bool {
	ok := err == nil
	if !h.known {
		h.known, h.healthy, h.streak = true, ok, 0
		return true
	}
	if ok == h.healthy {
		h.streak = 0
		return false
	}
	h.streak++
	need := fall
	if ok {
		need = rise
	}
	if h.streak < need {
		return false
	}
	h.healthy, h.streak = ok, 0
	return true
}
