package main

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdCluster is three real etcd members on loopback, with etcd's default
// settings but the ports (plaintext http, fsync on, heartbeat 100ms,
// election timeout 1s).
type etcdCluster struct {
	ps      *procs
	label   string
	dir     string
	cpus    string
	args    [3][]string
	members [3]*proc
	urls    []string
	cl      *clientv3.Client

	// next is the last generation written: each write is of a newer one,
	// as each dnsplan apply is of a newer plan.
	next      int64
	endpoints int
	foToken   int64
}

// Ports of member i from base: client base+1+i, peer base+11+i.
func etcdPorts(base int) []int {
	var ps []int
	for i := range 3 {
		ps = append(ps, base+1+i, base+11+i)
	}
	return ps
}

func startEtcd(ctx context.Context, ps *procs, bin, label, dir, cpus string, base int) (*etcdCluster, error) {
	if err := waitFree(etcdPorts(base)...); err != nil {
		return nil, err
	}
	c := &etcdCluster{ps: ps, label: label, dir: dir, cpus: cpus, endpoints: 256}
	var initial []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i+1, addr(base+11+i)))
		c.urls = append(c.urls, "http://"+addr(base+1+i))
	}
	for i := range 3 {
		name := fmt.Sprintf("m%d", i+1)
		c.args[i] = []string{bin, "--name", name, "--data-dir", filepath.Join(dir, name),
			"--listen-client-urls", c.urls[i], "--advertise-client-urls", c.urls[i],
			"--listen-peer-urls", "http://" + addr(base+11+i), "--initial-advertise-peer-urls", "http://" + addr(base+11+i),
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "bench", "--logger", "zap", "--log-level", "warn"}
		if err := c.start(i); err != nil {
			return nil, err
		}
	}
	cl, err := clientv3.New(clientv3.Config{Endpoints: c.urls, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	c.cl = cl
	if err := c.waitWhole(ctx); err != nil {
		return nil, err
	}
	// Every endpoint starts at generation 0, so the first write's
	// comparison has a value to compare.
	for e := range c.endpoints {
		if _, err := c.cl.Put(ctx, etcdEndpointKey(e), genValue(0, e)); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *etcdCluster) start(i int) error {
	p, err := c.ps.start(fmt.Sprintf("%s m%d", c.label, i+1), c.cpus, filepath.Join(c.dir, fmt.Sprintf("m%d.log", i+1)), c.args[i]...)
	c.members[i] = p
	return err
}

func (c *etcdCluster) name() string { return c.label }

// waitWhole waits until every member answers and all name the same leader.
func (c *etcdCluster) waitWhole(ctx context.Context) error {
	var exited error
	err := waitFor(c.label+" cluster whole", 60*time.Second, func() bool {
		if exited = exitedOne(c.members[:]); exited != nil {
			return true
		}
		var leader uint64
		for i, u := range c.urls {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := c.cl.Status(sctx, u)
			cancel()
			if err != nil || st.Leader == 0 || (i > 0 && st.Leader != leader) {
				return false
			}
			leader = st.Leader
		}
		return true
	})
	return cmp.Or(exited, err)
}

func (c *etcdCluster) leader(ctx context.Context) (int, error) {
	for i, u := range c.urls {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := c.cl.Status(sctx, u)
		cancel()
		if err == nil && st.Leader == st.Header.MemberId {
			return i, nil
		}
	}
	return -1, fmt.Errorf("%s: no member is leader", c.label)
}

func (c *etcdCluster) kill(i int) { c.members[i].kill(syscall.SIGKILL) }

func (c *etcdCluster) restart(ctx context.Context, i int) error {
	if err := c.start(i); err != nil {
		return err
	}
	return c.waitWhole(ctx)
}

func (c *etcdCluster) stop() {
	if c.cl != nil {
		c.cl.Close()
	}
	for _, p := range c.members {
		if p != nil {
			p.kill(syscall.SIGTERM)
		}
	}
}

func etcdEndpointKey(e int) string { return "/bench/applied/" + endpointName(e) }

// genValue is what an endpoint's key holds: its generation, zero-padded so
// that etcd's byte-wise comparison orders generations, then its records.
func genValue(gen int64, e int) string {
	return fmt.Sprintf("%020d %s", gen, strings.Join(endpointAddrs(e), ","))
}

// lease puts the lease key name; its revision is the fencing token, as a
// dnsplan lease's token is the log index that granted it.
func (c *etcdCluster) lease(ctx context.Context, name string) (string, int64, error) {
	key := "/bench/lease/" + name
	r, err := c.cl.Put(ctx, key, name)
	if err != nil {
		return "", 0, err
	}
	return key, r.Header.Revision, nil
}

// txn is the fenced conditional apply: if the lease key still has the
// holder's revision and the endpoint is older than gen, put gen and the
// records. It fails unless the comparison held.
func (c *etcdCluster) txn(ctx context.Context, leaseKey string, token, gen int64, e int) (bool, error) {
	key := etcdEndpointKey(e)
	r, err := c.cl.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(leaseKey), "=", token),
			clientv3.Compare(clientv3.Value(key), "<", fmt.Sprintf("%020d", gen))).
		Then(clientv3.OpPut(key, genValue(gen, e))).
		Commit()
	if err != nil {
		return false, err
	}
	return r.Succeeded, nil
}

// prepare mirrors dnsplanCluster.prepare: a lease key per client, the
// endpoints shared out the same way, and the same sequence of ever newer
// generations.
func (c *etcdCluster) prepare(ctx context.Context, clients, maxOps int) (opFunc, error) {
	keys := make([]string, clients)
	tokens := make([]int64, clients)
	for i := range clients {
		var err error
		if keys[i], tokens[i], err = c.lease(ctx, strconv.Itoa(i)); err != nil {
			return nil, err
		}
	}
	base, plans := c.next, int64(maxOps/c.endpoints+1)
	c.next += plans
	share := c.endpoints / clients
	return func(ctx context.Context, cl, i int) (bool, error) {
		k := int64(i / share)
		if k >= plans {
			return false, nil
		}
		ok, err := c.txn(ctx, keys[cl], tokens[cl], base+1+k, cl+clients*(i%share))
		if err == nil && !ok {
			err = fmt.Errorf("%s: comparison failed", c.label)
		}
		return true, err
	}, nil
}

func (c *etcdCluster) prepareFailover(ctx context.Context, trials int) error {
	_, tok, err := c.lease(ctx, "failover")
	c.foToken = tok
	return err
}

// write is the failover trial's write: a newer generation on endpoint 0.
// Any answer is an acknowledged write: a retried Txn whose first attempt
// committed answers that its comparison failed, as a retried dnsplan apply
// answers that it was applied.
func (c *etcdCluster) write(ctx context.Context) error {
	c.next++
	_, err := c.txn(ctx, "/bench/lease/failover", c.foToken, c.next, 0)
	return err
}
