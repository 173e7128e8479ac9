package planner

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dnsplan/dnsplan/backend"
	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/internal/loopback"
)

// The hysteresis rule on its own: the first result sets the state, then
// it takes fall failures to go down and rise successes to come back.
func TestTargetHealthRiseFall(t *testing.T) {
	fail := errors.New("down")
	for _, tc := range []struct {
		name       string
		rise, fall int
		results    []error
		want       []bool // healthy after each result
	}{
		{"first success sets healthy", 2, 2, []error{nil}, []bool{true}},
		{"first failure sets unhealthy", 2, 2, []error{fail}, []bool{false}},
		{"one lost probe does not flap", 2, 2, []error{nil, fail, nil, fail, nil}, []bool{true, true, true, true, true}},
		{"fall consecutive failures", 2, 2, []error{nil, fail, fail}, []bool{true, true, false}},
		{"rise consecutive successes", 2, 2, []error{fail, nil, fail, nil, nil}, []bool{false, false, false, false, true}},
		{"fall 3", 1, 3, []error{nil, fail, fail, nil, fail, fail, fail}, []bool{true, true, true, true, true, true, false}},
		{"rise 1 fall 1", 1, 1, []error{nil, fail, nil}, []bool{true, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h targetHealth
			for i, r := range tc.results {
				h.observe(r, tc.rise, tc.fall)
				if !h.known || h.healthy != tc.want[i] {
					t.Fatalf("after result %d (%v): known=%v healthy=%v, want healthy=%v", i, r, h.known, h.healthy, tc.want[i])
				}
			}
		})
	}
}

// newProbePlanner is a planner over inv that is never Run: the test
// drives probe rounds itself, one at a time, so rise and fall are counted
// exactly.
func newProbePlanner(t *testing.T, inv *Inventory, rise, fall int) *Planner {
	t.Helper()
	p, err := New(Config{ID: "probe-test", Client: &fakeCluster{}, Inventory: inv, Rise: rise, Fall: fall,
		ProbeTimeout: 500 * time.Millisecond, Logger: clustertest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func oneEndpoint(targets ...Target) *Inventory {
	return &Inventory{Zone: "dnsplan.test.", Endpoints: []Endpoint{{Name: "api.dnsplan.test.", TTL: 30, Targets: targets}}}
}

func startBackend(t *testing.T, id string) (*backend.Backend, string) {
	t.Helper()
	b := backend.New(id)
	srv := httptest.NewServer(b.Handler())
	t.Cleanup(srv.Close)
	return b, srv.URL + "/healthz"
}

// healthAfterRound runs one probe round and returns the target's health;
// absent (unknown) reads as "unknown".
func healthAfterRound(t *testing.T, p *Planner, id string) string {
	t.Helper()
	p.probeRound(context.Background())
	h, ok := p.Health()[id]
	switch {
	case !ok:
		return "unknown"
	case h:
		return "healthy"
	}
	return "unhealthy"
}

// Real backends over HTTP: a 503 makes a target unhealthy, but only after
// fall probes, and healthy again only after rise probes.
func TestProbeHTTPBackendRiseFall(t *testing.T) {
	b, check := startBackend(t, "lb-a")
	p := newProbePlanner(t, oneEndpoint(Target{ID: "lb-a", Address: "192.0.2.1", Capacity: 1, Check: check}), 2, 2)
	if _, ok := p.Health()["lb-a"]; ok || p.Ready() {
		t.Fatal("a target has a health before its first probe")
	}
	steps := []struct {
		fail bool
		want string
	}{
		{false, "healthy"},   // the first result sets it
		{true, "healthy"},    // one failed probe: fall is 2
		{false, "healthy"},   // the streak is broken
		{true, "healthy"},    // 1 of 2
		{true, "unhealthy"},  // 2 of 2
		{false, "unhealthy"}, // 1 of rise 2
		{true, "unhealthy"},
		{false, "unhealthy"},
		{false, "healthy"},
	}
	for i, s := range steps {
		if s.fail {
			b.Fail()
		} else {
			b.Recover()
		}
		if got := healthAfterRound(t, p, "lb-a"); got != s.want {
			t.Fatalf("step %d (backend failing=%v): %s, want %s", i, s.fail, got, s.want)
		}
	}
	if !p.Ready() {
		t.Error("not ready after probing every target")
	}
}

func TestProbeHTTPFailures(t *testing.T) {
	failing, failingCheck := startBackend(t, "failing")
	failing.Fail()
	redirect := httptest.NewServer(http.RedirectHandler("/elsewhere", http.StatusFound))
	t.Cleanup(redirect.Close)
	// A server that accepts and never answers: the probe must give up at
	// its timeout rather than hold the round.
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) })
	_, healthyCheck := startBackend(t, "fine")

	inv := oneEndpoint(
		Target{ID: "503", Address: "192.0.2.1", Capacity: 1, Check: failingCheck},
		Target{ID: "302", Address: "192.0.2.2", Capacity: 1, Check: redirect.URL + "/healthz"},
		Target{ID: "hang", Address: "192.0.2.3", Capacity: 1, Check: hang.URL + "/healthz"},
		// A free port: nothing listens there.
		Target{ID: "refused", Address: "192.0.2.4", Capacity: 1, Check: "http://" + loopback.FreeAddr(t) + "/healthz"},
		Target{ID: "fine", Address: "192.0.2.5", Capacity: 1, Check: healthyCheck},
		Target{ID: "nocheck", Address: "192.0.2.6", Capacity: 1},
	)
	p := newProbePlanner(t, inv, 2, 2)
	p.probeRound(context.Background())
	want := map[string]bool{"503": false, "302": false, "hang": false, "refused": false, "fine": true, "nocheck": true}
	got := p.Health()
	for id, w := range want {
		if h, ok := got[id]; !ok || h != w {
			t.Errorf("%s: healthy=%v known=%v, want healthy=%v", id, h, ok, w)
		}
	}
}

// A real TCP listener: healthy while it accepts, unhealthy after fall
// refused connections.
func TestProbeTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	p := newProbePlanner(t, oneEndpoint(Target{ID: "db", Address: "192.0.2.1", Capacity: 1, Check: "tcp://" + addr}), 2, 2)
	if got := healthAfterRound(t, p, "db"); got != "healthy" {
		t.Fatalf("listening: %s", got)
	}
	l.Close()
	<-accepted
	if got := healthAfterRound(t, p, "db"); got != "healthy" {
		t.Fatalf("one refused connection flipped it: %s", got)
	}
	if got := healthAfterRound(t, p, "db"); got != "unhealthy" {
		t.Fatalf("two refused connections: %s", got)
	}

	// A refused first probe (nothing listens on a free port) sets
	// unhealthy at once.
	q := newProbePlanner(t, oneEndpoint(Target{ID: "db", Address: "192.0.2.1", Capacity: 1, Check: "tcp://" + loopback.FreeAddr(t)}), 2, 2)
	if got := healthAfterRound(t, q, "db"); got != "unhealthy" {
		t.Fatalf("refused first probe: %s", got)
	}
}

// Targets sharing a check share each probe, so they change state in the
// same round.
func TestSharedCheckProbedOnce(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	check := srv.URL + "/healthz"
	inv := &Inventory{Zone: "dnsplan.test.", Endpoints: []Endpoint{
		{Name: "a.dnsplan.test.", TTL: 30, Targets: []Target{
			{ID: "lb-1", Address: "192.0.2.1", Capacity: 1, Check: check},
			{ID: "lb-2", Address: "192.0.2.2", Capacity: 1, Check: check},
		}},
		{Name: "b.dnsplan.test.", TTL: 30, Targets: []Target{{ID: "lb-1", Address: "2001:db8::1", Capacity: 1, Check: check}}},
	}}
	p := newProbePlanner(t, inv, 2, 2)
	p.probeRound(context.Background())
	if n := hits.Load(); n != 1 {
		t.Errorf("%d requests for one check in one round, want 1", n)
	}
	if h := p.Health(); !h["lb-1"] || !h["lb-2"] {
		t.Errorf("health %v", h)
	}
}

// A cancelled round returns and records nothing.
func TestProbeRoundCancelled(t *testing.T) {
	_, check := startBackend(t, "lb-a")
	p := newProbePlanner(t, oneEndpoint(Target{ID: "lb-a", Address: "192.0.2.1", Capacity: 1, Check: check}), 2, 2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.probeRound(ctx)
	if h := p.Health(); len(h) != 0 {
		t.Errorf("a cancelled round recorded %v", h)
	}
}

// A listener that accepts and never speaks (no HTTP answer, no TLS
// handshake): the probe ends on its own timeout, as a failure.
func TestProbeTimesOutOnSilentServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	pr := newProber(200 * time.Millisecond)
	for _, raw := range []string{"http://" + l.Addr().String() + "/", "https://" + l.Addr().String() + "/"} {
		c, err := parseCheck(raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := pr.probe(context.Background(), c); err == nil {
			t.Errorf("%s: a silent server counted as healthy", raw)
		}
	}
}
