package etcdlog_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/dnsplan/dnsplan/cluster/etcdlog"
	"github.com/dnsplan/dnsplan/internal/etcdtest"
)

// userClient is a client of c acting as user (by password; the compose
// cluster's users act by certificate, which etcdtest's plaintext members
// cannot take).
func userClient(t *testing.T, c *etcdtest.Cluster, user, password string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 2 * time.Second, Username: user, Password: password, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("client as %s: %v", user, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Authorize leaves the log's prefix writable by the nodes' users and root
// alone, turns authentication on, changes nothing when run again, and
// refuses to leave another writer of the prefix in place.
func TestAuthorize(t *testing.T) {
	c := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	anyone := c.Client(t)
	// Users that exist are kept with their passwords, so the test can act
	// as them: root, node n1, and a planner that must get nothing.
	for user, pw := range map[string]string{"root": "rootpw", "n1": "n1pw", "planner": "plpw"} {
		if _, err := anyone.UserAdd(ctx, user, pw); err != nil {
			t.Fatal(err)
		}
	}
	done, err := etcdlog.Authorize(ctx, anyone, "/log/", etcdlog.DefaultRole, []string{"n1", "n2"})
	if err != nil {
		t.Fatalf("Authorize: %v (after %q)", err, done)
	}
	if want := []string{"added role root", "granted role root to user root", "added role dnsplan", "granted role dnsplan read and write on /log/",
		"granted role dnsplan to user n1", "added user n2 (no password: its certificate's common name)", "granted role dnsplan to user n2", "enabled authentication"}; strings.Join(done, "|") != strings.Join(want, "|") {
		t.Fatalf("Authorize did %q, want %q", done, want)
	}

	node := userClient(t, c, "n1", "n1pw")
	if _, err := node.Put(ctx, "/log/head", "1"); err != nil {
		t.Fatalf("node n1 writing the log: %v", err)
	}
	if _, err := node.Get(ctx, "/log/", clientv3.WithPrefix()); err != nil {
		t.Fatalf("node n1 reading the log: %v", err)
	}
	for who, cli := range map[string]*clientv3.Client{"n1 outside the prefix": node, "a planner": userClient(t, c, "planner", "plpw")} {
		key := "/log/head"
		if cli == node {
			key = "/elsewhere"
		}
		if _, err := cli.Put(ctx, key, "x"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
			t.Errorf("%s writing %s: %v, want permission denied", who, key, err)
		}
	}
	if _, err := anyone.Put(ctx, "/log/head", "x"); err == nil {
		t.Error("a client with no user wrote the log")
	}

	root := userClient(t, c, "root", "rootpw")
	if done, err := etcdlog.Authorize(ctx, root, "/log/", etcdlog.DefaultRole, []string{"n1", "n2"}); err != nil || len(done) != 0 {
		t.Fatalf("Authorize again: did %q, %v; want nothing", done, err)
	}

	// Another writer of the prefix is refused, not left in place.
	if _, err := root.UserGrantRole(ctx, "planner", etcdlog.DefaultRole); err != nil {
		t.Fatal(err)
	}
	if _, err := etcdlog.Authorize(ctx, root, "/log/", etcdlog.DefaultRole, []string{"n1", "n2"}); err == nil || !strings.Contains(err.Error(), "user planner holds role dnsplan") {
		t.Fatalf("Authorize with the planner holding the role: %v", err)
	}
	if _, err := root.UserRevokeRole(ctx, "planner", etcdlog.DefaultRole); err != nil {
		t.Fatal(err)
	}
	if _, err := root.RoleAdd(ctx, "wide"); err != nil {
		t.Fatal(err)
	}
	if _, err := root.RoleGrantPermission(ctx, "wide", "/", "\x00", clientv3.PermissionType(clientv3.PermWrite)); err != nil {
		t.Fatal(err)
	}
	if _, err := etcdlog.Authorize(ctx, root, "/log/", etcdlog.DefaultRole, []string{"n1", "n2"}); err == nil || !strings.Contains(err.Error(), "role wide may write") {
		t.Fatalf("Authorize with a role writing every key: %v", err)
	}
	for _, bad := range [][]string{nil, {"root"}, {""}} {
		if _, err := etcdlog.Authorize(ctx, root, "/log/", etcdlog.DefaultRole, bad); err == nil {
			t.Errorf("Authorize for users %q: no error", bad)
		}
	}
	if _, err := etcdlog.Authorize(ctx, root, "log", etcdlog.DefaultRole, []string{"n1"}); err == nil {
		t.Error("Authorize of prefix \"log\": no error")
	}
}
