package auth

import (
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func newCA(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if err := InitCA(dir, 0, now); err != nil {
		t.Fatal(err)
	}
	return dir
}

func issue(t *testing.T, dir string, role Role, name string, hosts ...string) {
	t.Helper()
	if err := Issue(dir, IssueRequest{Identity: Identity{Role: role, Name: name}, Hosts: hosts}, now); err != nil {
		t.Fatal(err)
	}
}

// Every role issues a certificate whose identity reads back; a node's
// certificate serves its hosts, the others only connect.
func TestIssueAndReadIdentity(t *testing.T) {
	dir := newCA(t)
	for _, name := range Roles() {
		role, err := ParseRole(name)
		if err != nil {
			t.Fatal(err)
		}
		var hosts []string
		if role == RoleNode {
			hosts = []string{"node1", "127.0.0.1"}
		}
		issue(t, dir, role, name+"-1", hosts...)
		c, err := LoadCert(CertFile(dir, name+"-1"))
		if err != nil {
			t.Fatal(err)
		}
		id, err := IdentityOf(c)
		if err != nil || id != (Identity{Role: role, Name: name + "-1"}) {
			t.Fatalf("%s: identity %v, %v", name, id, err)
		}
		server := false
		for _, u := range c.ExtKeyUsage {
			server = server || u == x509.ExtKeyUsageServerAuth
		}
		if server != (role == RoleNode) {
			t.Errorf("%s: server use %v", name, server)
		}
		if got := c.NotAfter.Sub(now); got != DefaultCertValidity {
			t.Errorf("%s: valid for %s, want %s", name, got, DefaultCertValidity)
		}
		if fi, err := os.Stat(KeyFile(dir, name+"-1")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: key file mode %v, %v", name, fi.Mode(), err)
		}
	}
	n, _ := LoadCert(CertFile(dir, "node-1"))
	if len(n.DNSNames) != 1 || n.DNSNames[0] != "node1" || len(n.IPAddresses) != 1 || !n.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Fatalf("node hosts %v %v", n.DNSNames, n.IPAddresses)
	}
	out := Describe(n, now)
	for _, want := range []string{"role:        node", "name:        node-1", "hosts:       node1, 127.0.0.1", "in 90 days"} {
		if !strings.Contains(out, want) {
			t.Errorf("Describe does not say %q:\n%s", want, out)
		}
	}
}

// etcd's certificates name no dnsplan identity, so dnsplan refuses them
// as callers and as nodes; etcd reads their common name. A member's
// serves its hosts and dials its peers, a user's only connects.
func TestIssueEtcd(t *testing.T) {
	dir := newCA(t)
	if err := Issue(dir, IssueRequest{Identity: Identity{Name: "etcd1"}, Etcd: EtcdMember, Hosts: []string{"etcd1", "127.0.0.1"}}, now); err != nil {
		t.Fatal(err)
	}
	if err := Issue(dir, IssueRequest{Identity: Identity{Name: "root"}, Etcd: EtcdUser}, now); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]struct {
		use    EtcdUse
		server bool
	}{"etcd1": {EtcdMember, true}, "root": {EtcdUser, false}} {
		c, err := LoadCert(CertFile(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if id, err := IdentityOf(c); !errors.Is(err, ErrNoIdentity) {
			t.Errorf("%s: identity %v, %v; want none", name, id, err)
		}
		if c.Subject.CommonName != name || EtcdUseOf(c) != want.use {
			t.Errorf("%s: common name %q, use %s; want %s", name, c.Subject.CommonName, EtcdUseOf(c), want.use)
		}
		var server, client bool
		for _, u := range c.ExtKeyUsage {
			server = server || u == x509.ExtKeyUsageServerAuth
			client = client || u == x509.ExtKeyUsageClientAuth
		}
		if server != want.server || !client {
			t.Errorf("%s: server use %v, client use %v", name, server, client)
		}
		if out := Describe(c, now); !strings.Contains(out, "etcd:        "+want.use.String()) {
			t.Errorf("Describe does not say it is for etcd:\n%s", out)
		}
	}
	m, _ := LoadCert(CertFile(dir, "etcd1"))
	if len(m.DNSNames) != 1 || m.DNSNames[0] != "etcd1" || len(m.IPAddresses) != 1 {
		t.Fatalf("member hosts %v %v", m.DNSNames, m.IPAddresses)
	}
	if _, err := NewLoader(FilesIn(dir, "etcd1")); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("a dnsplan process loaded an etcd certificate: %v", err)
	}
	if u, err := ParseEtcdUse("node"); err == nil {
		t.Fatalf("ParseEtcdUse(node) = %s", u)
	}
}

// Nothing is overwritten by accident: a second CA, a second certificate of
// one name (unless replacing, as a rotation does).
func TestNoOverwrite(t *testing.T) {
	dir := newCA(t)
	if err := InitCA(dir, 0, now); !errors.Is(err, ErrExists) {
		t.Fatalf("second InitCA: %v, want ErrExists", err)
	}
	issue(t, dir, RoleEnactor, "az-a")
	before, _ := os.ReadFile(CertFile(dir, "az-a"))
	r := IssueRequest{Identity: Identity{Role: RoleEnactor, Name: "az-a"}}
	if err := Issue(dir, r, now); !errors.Is(err, ErrExists) {
		t.Fatalf("second Issue: %v, want ErrExists", err)
	}
	r.Replace = true
	if err := Issue(dir, r, now); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(CertFile(dir, "az-a")); string(after) == string(before) {
		t.Fatal("--replace did not replace the certificate")
	}
}

func TestIssueRefuses(t *testing.T) {
	dir := newCA(t)
	for _, tc := range []struct {
		name string
		r    IssueRequest
		want string
	}{
		{"no role", IssueRequest{Identity: Identity{Name: "x"}}, "one role"},
		{"two roles", IssueRequest{Identity: Identity{Role: RoleNode | RoleOperator, Name: "x"}}, "one role"},
		{"empty name", IssueRequest{Identity: Identity{Role: RoleReader}}, "1..128"},
		{"name with a slash", IssueRequest{Identity: Identity{Role: RoleReader, Name: "a/b"}}, "character '/'"},
		{"long name", IssueRequest{Identity: Identity{Role: RoleReader, Name: strings.Repeat("n", 129)}}, "1..128"},
		{"hosts for a client", IssueRequest{Identity: Identity{Role: RoleOperator, Name: "ops"}, Hosts: []string{"h"}}, "for node and etcd-member certificates"},
		{"hosts for an etcd user", IssueRequest{Identity: Identity{Name: "root"}, Etcd: EtcdUser, Hosts: []string{"h"}}, "for node and etcd-member certificates"},
		{"a role on an etcd certificate", IssueRequest{Identity: Identity{Role: RoleNode, Name: "etcd1"}, Etcd: EtcdMember}, "names no dnsplan role"},
		{"outlives the CA", IssueRequest{Identity: Identity{Role: RoleReader, Name: "r"}, ValidFor: 10 * DefaultCAValidity}, "outlive the CA"},
	} {
		if err := Issue(dir, tc.r, now); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %q", tc.name, err, tc.want)
		}
	}
	if err := Issue(t.TempDir(), IssueRequest{Identity: Identity{Role: RoleReader, Name: "r"}}, now); err == nil || !strings.Contains(err.Error(), "certs init") {
		t.Errorf("no CA: %v, want a hint to run certs init", err)
	}
}

// The identity URI is read strictly: one URI, a known role, a valid name,
// nothing else.
func TestIdentityOf(t *testing.T) {
	u := func(s string) *url.URL {
		x, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	for _, tc := range []struct {
		uris []*url.URL
		ok   bool
	}{
		{[]*url.URL{u("dnsplan://enactor/az-a")}, true},
		{[]*url.URL{u("https://example.com/"), u("dnsplan://reader/dash")}, true},
		{nil, false},
		{[]*url.URL{u("dnsplan://enactor/az-a"), u("dnsplan://operator/ops")}, false},
		{[]*url.URL{u("dnsplan://admin/x")}, false},
		{[]*url.URL{u("dnsplan://enactor/")}, false},
		{[]*url.URL{u("dnsplan://enactor/a/b")}, false},
		{[]*url.URL{u("dnsplan://enactor/a?x=1")}, false},
		{[]*url.URL{u("dnsplan://enactor:1/a")}, false},
		{[]*url.URL{u("dnsplan://u@enactor/a")}, false},
		{[]*url.URL{u("dnsplan:enactor/a")}, false},
		{[]*url.URL{u("dnsplan://enactor/%2e%2e")}, false},
	} {
		id, err := IdentityOf(&x509.Certificate{URIs: tc.uris})
		if (err == nil) != tc.ok {
			t.Errorf("%v: %v, %v; want ok=%v", tc.uris, id, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrNoIdentity) {
			t.Errorf("%v: %v does not wrap ErrNoIdentity", tc.uris, err)
		}
	}
}

// FuzzIdentityOf feeds arbitrary bytes, read as a certificate, to the
// identity parser: it never panics, and an identity it accepts is a known
// role with a valid name, round-tripping through its URI.
func FuzzIdentityOf(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "certs")
	if err := InitCA(dir, 0, now); err != nil {
		f.Fatal(err)
	}
	if err := Issue(dir, IssueRequest{Identity: Identity{Role: RoleEnactor, Name: "az-a"}}, now); err != nil {
		f.Fatal(err)
	}
	c, err := LoadCert(CertFile(dir, "az-a"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c.Raw)
	f.Add([]byte("dnsplan://enactor/az-a"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var certs []*x509.Certificate
		if c, err := x509.ParseCertificate(b); err == nil {
			certs = append(certs, c)
		}
		if u, err := url.Parse(string(b)); err == nil {
			certs = append(certs, &x509.Certificate{URIs: []*url.URL{u}})
		}
		for _, c := range certs {
			id, err := IdentityOf(c)
			if err != nil {
				continue
			}
			if _, perr := ParseRole(id.Role.String()); perr != nil || ValidateName(id.Name) != nil {
				t.Fatalf("accepted identity %v", id)
			}
			back, err := IdentityOf(&x509.Certificate{URIs: []*url.URL{id.URI()}})
			if err != nil || back != id {
				t.Fatalf("identity %v does not round-trip: %v, %v", id, back, err)
			}
		}
	})
}
