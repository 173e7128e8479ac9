package etcdtest_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dnsplan/dnsplan/internal/etcdtest"
	"github.com/dnsplan/dnsplan/internal/poll"
)

func put(t *testing.T, cli *clientv3.Client, key, val string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, key, val); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// get reads key from the member of cli alone (serializable), so it shows
// what that member holds.
func get(t *testing.T, cli *clientv3.Client, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key, clientv3.WithSerializable())
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

// catchUp waits until the member of cli holds key = want: a restarted
// member catching up with the writes it missed.
func catchUp(t *testing.T, cli *clientv3.Client, key, want string) {
	t.Helper()
	if err := poll.Until(context.Background(), 10*time.Second, key+" on the restarted member", func() bool {
		return get(t, cli, key) == want
	}); err != nil {
		t.Fatal(err)
	}
}

// A member killed, or stopped, while the others take writes comes back on
// its data and catches up; a cluster stopped whole comes back with
// everything it had.
func TestClusterSurvivesKillRestartAndOutage(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	put(t, cli, "a", "1")

	c.Kill(0)
	put(t, cli, "b", "2") // two of three are a quorum
	c.Restart(0)
	m0 := c.ClientOf(t, c.Member(0).ClientURL)
	catchUp(t, m0, "b", "2")
	if got := get(t, m0, "a"); got != "1" {
		t.Fatalf("restarted member lost a: %q", got)
	}

	c.Stop(1) // gracefully, this time
	put(t, cli, "b2", "2")
	c.Restart(1)
	catchUp(t, c.ClientOf(t, c.Member(1).ClientURL), "b2", "2")

	c.StopAll()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err := cli.Put(ctx, "c", "3")
	cancel()
	if err == nil {
		t.Fatal("a write succeeded with every member stopped")
	}
	c.StartAll()
	put(t, cli, "c", "3")
	for _, k := range []string{"a", "b", "b2", "c"} {
		if get(t, cli, k) == "" {
			t.Fatalf("%s lost across the outage", k)
		}
	}
}
