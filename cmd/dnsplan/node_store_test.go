package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/cluster"
)

// The store flags: raft by default, etcd with its endpoints, from the
// environment as every flag, and clear errors for combinations that make
// no sense.
func TestNodeStoreFlags(t *testing.T) {
	cfg, err := nodeConfig([]string{"--id", "n1", "--insecure"}, &bytes.Buffer{})
	if err != nil || cfg.Store != cluster.StoreRaft || len(cfg.Etcd.Endpoints) != 0 {
		t.Fatalf("default: store %q, etcd %+v, %v; want raft", cfg.Store, cfg.Etcd, err)
	}

	t.Setenv("DNSPLAN_STORE", "etcd")
	t.Setenv("DNSPLAN_ETCD_ENDPOINTS", "http://127.0.0.1:2379, http://127.0.0.1:22379")
	cfg, err = nodeConfig([]string{"--id", "n1", "--insecure", "--etcd-prefix", "/dns/"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store != cluster.StoreEtcd || cfg.Etcd.Prefix != "/dns/" || !slices.Equal(cfg.Etcd.Endpoints, []string{"http://127.0.0.1:2379", "http://127.0.0.1:22379"}) || cfg.Etcd.TLS != nil {
		t.Fatalf("from the environment: store %q, etcd %+v", cfg.Store, cfg.Etcd)
	}
	os.Unsetenv("DNSPLAN_STORE")
	os.Unsetenv("DNSPLAN_ETCD_ENDPOINTS")

	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	certs := t.TempDir()
	if err := auth.InitCA(certs, 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := auth.Issue(certs, auth.IssueRequest{Identity: auth.Identity{Role: auth.RoleNode, Name: "n1"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	etcd := []string{"--id", "n1", "--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:2379"}
	secured := append(slices.Clone(etcd), "--tls-ca", filepath.Join(certs, "ca.crt"), "--tls-cert", filepath.Join(certs, "n1.crt"), "--tls-key", filepath.Join(certs, "n1.key"))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--id", "n1", "--insecure", "--store", "zookeeper"}, "--store"},
		{[]string{"--id", "n1", "--insecure", "--etcd-endpoints", "http://127.0.0.1:2379"}, "need --store etcd"},
		{[]string{"--id", "n1", "--insecure", "--store", "etcd"}, "needs --etcd-endpoints"},
		{append(slices.Clone(etcd), "--insecure", "--etcd-prefix", "dnsplan"), "must start and end with /"},
		{append(slices.Clone(etcd), "--insecure", "--etcd-ca", ca, "--etcd-cert", "c.crt"), "go together"},
		{append(slices.Clone(etcd), "--insecure", "--etcd-cert", "c.crt", "--etcd-key", "c.key"), "needs --etcd-ca"},
		{append(slices.Clone(etcd), "--insecure", "--etcd-username", "dnsplan"), "go together"},
		{append(slices.Clone(etcd), "--insecure", "--etcd-ca", ca), "no PEM certificate"},
		{append(slices.Clone(etcd), "--insecure", "--join", "127.0.0.1:9001"), "for --store raft"},
		{append(slices.Clone(etcd), "--insecure", "--initial-cluster", "n1=127.0.0.1:7001"), "for --store raft"},
		{secured, "needs TLS to etcd and an etcd identity"},
		{append(slices.Clone(secured), "--etcd-username", "dnsplan", "--etcd-password", "secret"), "needs TLS to etcd and an etcd identity"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := nodeConfig(tc.args, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// etcd-auth takes the node's etcd connection flags and wants the nodes'
// users named.
func TestEtcdAuthFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--etcd-endpoints", "http://127.0.0.1:2379"}, "--node"},
		{[]string{"--node", "n1"}, "needs --etcd-endpoints"},
		{[]string{"--node", "n1", "--etcd-endpoints", "http://127.0.0.1:2379", "--etcd-cert", "c.crt", "--etcd-key", "c.key"}, "needs --etcd-ca"},
		{[]string{"--node", "n1", "--etcd-endpoints", "http://127.0.0.1:2379", "extra"}, "unexpected arguments"},
	} {
		err := run(context.Background(), append([]string{"etcd-auth"}, tc.args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("etcd-auth %q: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}
