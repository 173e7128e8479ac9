package backend_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dnsplan/dnsplan/backend"
)

func do(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestBackendFailAndRecover(t *testing.T) {
	b := backend.New("lb-a")
	srv := httptest.NewServer(b.Handler())
	defer srv.Close()

	steps := []struct {
		method, path string
		wantCode     int
		wantBody     string
		wantHealthy  bool
	}{
		{"GET", "/healthz", 200, "ok\n", true},
		{"GET", "/", 200, "backend lb-a (healthy)\n", true},
		{"POST", "/fail", 200, "lb-a: failing\n", false},
		{"GET", "/healthz", 503, "failing\n", false},
		{"GET", "/", 200, "backend lb-a (failing)\n", false},
		{"POST", "/fail", 200, "lb-a: failing\n", false}, // idempotent
		{"POST", "/recover", 200, "lb-a: healthy\n", true},
		{"GET", "/healthz", 200, "ok\n", true},
		{"GET", "/nope", 404, "", true},
		{"GET", "/fail", 405, "", true}, // a stray GET must not fail it
	}
	for _, s := range steps {
		code, body := do(t, s.method, srv.URL+s.path)
		if code != s.wantCode {
			t.Errorf("%s %s: status %d, want %d", s.method, s.path, code, s.wantCode)
		}
		if s.wantBody != "" && body != s.wantBody {
			t.Errorf("%s %s: body %q, want %q", s.method, s.path, body, s.wantBody)
		}
		if b.Healthy() != s.wantHealthy {
			t.Errorf("after %s %s: Healthy() = %v, want %v", s.method, s.path, b.Healthy(), s.wantHealthy)
		}
	}
}

func TestBackendMethods(t *testing.T) {
	b := backend.New("lb-b")
	srv := httptest.NewServer(b.Handler())
	defer srv.Close()
	b.Fail()
	if code, _ := do(t, "GET", srv.URL+"/healthz"); code != http.StatusServiceUnavailable {
		t.Fatalf("after Fail: /healthz %d, want 503", code)
	}
	b.Recover()
	if code, body := do(t, "GET", srv.URL+"/healthz"); code != http.StatusOK || !strings.Contains(body, "ok") {
		t.Fatalf("after Recover: /healthz %d %q, want 200 ok", code, body)
	}
	if b.ID() != "lb-b" {
		t.Fatalf("ID() = %q", b.ID())
	}
}
