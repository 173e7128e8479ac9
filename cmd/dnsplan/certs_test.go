package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dnsplan/dnsplan/auth"
)

// dnsplan certs makes a CA and certificates, shows them, and refuses what
// it must.
func TestRunCerts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	ctx := context.Background()
	for _, args := range [][]string{
		{"certs", "init", "--dir", dir},
		{"certs", "issue", "--dir", dir, "--role", "node", "--name", "node1", "--host", "node1", "--host", "127.0.0.1"},
		{"certs", "issue", "--dir", dir, "--role", "operator", "--name", "ops", "--valid-for", "24h"},
	} {
		if err := run(ctx, args, io.Discard, io.Discard); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"certs", "show", filepath.Join(dir, "ops.crt")}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"role:        operator", "name:        ops", "issuer:      dnsplan cluster CA", "(in 24h0m0s)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("certs show does not say %q:\n%s", want, out.String())
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"certs"}, "init, issue or show"},
		{[]string{"certs", "sign"}, "unknown step"},
		{[]string{"certs", "init", "--dir", dir}, "already exists"},
		{[]string{"certs", "init"}, "--dir is required"},
		{[]string{"certs", "issue", "--dir", dir, "--role", "root", "--name", "x"}, "not one of reader, planner, enactor, operator, node"},
		{[]string{"certs", "issue", "--dir", dir, "--role", "operator"}, "--name are required"},
		{[]string{"certs", "issue", "--dir", dir, "--role", "operator", "--name", "ops"}, "--replace"},
		{[]string{"certs", "issue", "--dir", dir, "--role", "planner", "--name", "p1", "--host", "h"}, "for node and etcd-member certificates"},
		{[]string{"certs", "show"}, "one certificate file"},
		{[]string{"certs", "show", filepath.Join(dir, "ca.key")}, "no PEM certificate"},
	} {
		err := run(ctx, tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error about %q", tc.args, err, tc.want)
		}
	}
}

// A node runs with TLS material or --insecure, never by default, and only
// with a node's certificate.
func TestNodeTLSFlags(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	for _, args := range [][]string{
		{"certs", "init", "--dir", dir},
		{"certs", "issue", "--dir", dir, "--role", "node", "--name", "n1"},
		{"certs", "issue", "--dir", dir, "--role", "node", "--name", "n2"},
		{"certs", "issue", "--dir", dir, "--role", "operator", "--name", "ops"},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	ca := filepath.Join(dir, "ca.crt")
	tlsOf := func(name string) []string {
		return []string{"--tls-ca", ca, "--tls-cert", filepath.Join(dir, name+".crt"), "--tls-key", filepath.Join(dir, name+".key")}
	}
	for _, tc := range []struct {
		name string
		args []string
		want string // "" = starts, with TLS unless --insecure
	}{
		{"nothing", nil, "dnsplan certs init"},
		{"insecure", []string{"--insecure"}, ""},
		{"node certificate", tlsOf("n1"), ""},
		{"both", append(tlsOf("n1"), "--insecure"), "exclude each other"},
		{"half", []string{"--tls-ca", ca}, "go together"},
		{"an operator's certificate", tlsOf("ops"), "a node needs a node's"},
		{"another node's certificate", []string{"--tls-ca", ca, "--tls-cert", filepath.Join(dir, "n2.crt"), "--tls-key", filepath.Join(dir, "n2.key")}, `names node "n2", but --id is "n1"`},
		{"missing file", []string{"--tls-ca", ca, "--tls-cert", filepath.Join(dir, "x.crt"), "--tls-key", filepath.Join(dir, "x.key")}, "no such file"},
	} {
		cfg, err := nodeConfig(append([]string{"--id", "n1"}, tc.args...), io.Discard)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want == "" && (cfg.TLS == nil) != (tc.name == "insecure"):
			t.Errorf("%s: TLS %v", tc.name, cfg.TLS)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error about %q", tc.name, err, tc.want)
		}
	}
}

// ctl finds the CA and an operator's certificate in .dnsplan/certs when
// given no TLS flag and not --insecure.
func TestCtlFindsDefaultCertificates(t *testing.T) {
	t.Chdir(t.TempDir())
	var none tlsFlags
	none.discover(defaultCertDir)
	if none.m != (auth.Material{}) {
		t.Fatalf("found %v where there is nothing", none.m)
	}
	for _, args := range [][]string{
		{"certs", "init", "--dir", defaultCertDir},
		{"certs", "issue", "--dir", defaultCertDir, "--role", "operator", "--name", "operator"},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	var found tlsFlags
	found.discover(defaultCertDir)
	if found.m.CA != filepath.Join(defaultCertDir, "ca.crt") || found.m.Cert != filepath.Join(defaultCertDir, "operator.crt") || found.m.Key != filepath.Join(defaultCertDir, "operator.key") {
		t.Fatalf("found %+v", found.m)
	}
	insecure := tlsFlags{insecure: true}
	insecure.discover(defaultCertDir)
	given := tlsFlags{m: auth.Material{CA: "mine.crt"}}
	given.discover(defaultCertDir)
	if insecure.m != (auth.Material{}) || given.m != (auth.Material{CA: "mine.crt"}) {
		t.Fatalf("discovery overrode --insecure (%v) or a flag (%v)", insecure.m, given.m)
	}
}

// certs init makes a whole cluster's certificates in one run, and with
// --if-missing a second run keeps what exists and adds what is missing.
func TestCertsInitIssues(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	args := []string{"certs", "init", "--dir", dir, "--if-missing", "--issue", "node/node1@node1,127.0.0.1", "--issue", "operator/operator",
		"--issue", "etcd-member/etcd1@etcd1,127.0.0.1", "--issue", "etcd-user/root"}
	if err := run(context.Background(), args, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), append(args, "--issue", "reader/probe"), io.Discard, io.Discard); err != nil {
		t.Fatalf("second run with --if-missing: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if !bytes.Equal(before, after) {
		t.Fatal("--if-missing replaced the CA")
	}
	for name, want := range map[string]string{"node1": "hosts:       node1, 127.0.0.1", "operator": "role:        operator", "probe": "role:        reader",
		"etcd1": "etcd:        etcd-member", "root": "etcd:        etcd-user"} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"certs", "show", filepath.Join(dir, name+".crt")}, &out, io.Discard); err != nil || !strings.Contains(out.String(), want) {
			t.Errorf("%s: %v\n%s", name, err, out.String())
		}
	}
	for _, bad := range []string{"node", "admin/x", "node/", "etcd-user/root@h"} {
		if err := run(context.Background(), []string{"certs", "init", "--dir", dir, "--if-missing", "--issue", bad}, io.Discard, io.Discard); err == nil {
			t.Errorf("--issue %q accepted", bad)
		}
	}
	if err := run(context.Background(), []string{"certs", "init", "--dir", dir}, io.Discard, io.Discard); err == nil {
		t.Error("init without --if-missing kept an existing CA silently")
	}
}
