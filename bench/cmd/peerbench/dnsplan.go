package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/client"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// benchZone is the zone every system serves in the benchmark, and
// endpointName(i) its i-th name.
const benchZone = "dnsplan.test."

func endpointName(i int) string { return fmt.Sprintf("e%04d.%s", i, benchZone) }

// endpointAddrs are endpoint i's four IPv4 addresses: 10.i/256.i%256.1-4.
func endpointAddrs(i int) []string {
	a := make([]string, 4)
	for t := range a {
		a[t] = fmt.Sprintf("10.%d.%d.%d", i>>8&255, i&255, t+1)
	}
	return a
}

// benchPlan is a plan of endpoints 0..n-1, four targets each, the same
// records in every generation: what changes between generations is only
// the generation, so no plan trips the velocity limit or the freeze on
// doubt, and each apply costs what any apply costs.
func benchPlan(n int) *pb.Plan {
	p := &pb.Plan{PlannerId: "bench"}
	for i := range n {
		ep := &pb.EndpointPlan{Name: endpointName(i), Ttl: 300}
		for t, a := range endpointAddrs(i) {
			ep.Targets = append(ep.Targets, &pb.Target{Id: fmt.Sprintf("lb-%d", t+1), Address: a, Weight: 1})
		}
		p.Endpoints = append(p.Endpoints, ep)
	}
	return p
}

// dnsplanNodeArgs are the flags of one benchmark node. Everything is the
// default but the ports, --insecure (plaintext, like etcd's http://
// URLs), and the per-client write rate: every benchmark client shares
// 127.0.0.1, which the default (200/s per client address) would throttle
// as one client.
func dnsplanNodeArgs(bin, dir, id string, raft, grpcPort, dns, http int) []string {
	return []string{bin, "node", "--id", id, "--insecure", "--data-dir", filepath.Join(dir, id),
		"--raft-addr", addr(raft), "--grpc-addr", addr(grpcPort), "--dns-addr", addr(dns), "--http-addr", addr(http),
		"--write-rate", "1e9", "--write-burst", "1000000000", "--log-level", "warn"}
}

// dnsplanCluster is three real `dnsplan node` processes on loopback.
type dnsplanCluster struct {
	ps    *procs
	bin   string
	dir   string
	cpus  string
	base  int
	args  [3][]string
	nodes [3]*proc
	grpc  []string
	dns   []string
	cl    *client.Client

	// endpoints is how many endpoints the apply load spreads over.
	endpoints int
	// failover state: a lease, and the plans each trial applies in turn.
	foLease *pb.Lease
	foGens  []uint64
	foNext  int
}

// Ports of node i (0..2) from base: Raft base+1+i, gRPC base+11+i, DNS
// base+21+i, HTTP base+31+i.
func dnsplanPorts(base int) []int {
	var ps []int
	for i := range 3 {
		ps = append(ps, base+1+i, base+11+i, base+21+i, base+31+i)
	}
	return ps
}

func startDnsplan(ctx context.Context, ps *procs, bin, dir, cpus string, base int) (*dnsplanCluster, error) {
	if err := waitFree(dnsplanPorts(base)...); err != nil {
		return nil, err
	}
	c := &dnsplanCluster{ps: ps, bin: bin, dir: dir, cpus: cpus, base: base, endpoints: 256}
	var initial []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("node%d=%s", i+1, addr(base+1+i)))
		c.grpc = append(c.grpc, addr(base+11+i))
		c.dns = append(c.dns, addr(base+21+i))
	}
	for i := range 3 {
		c.args[i] = append(dnsplanNodeArgs(bin, dir, fmt.Sprintf("node%d", i+1), base+1+i, base+11+i, base+21+i, base+31+i),
			"--initial-cluster", strings.Join(initial, ","))
		if err := c.start(i); err != nil {
			return nil, err
		}
	}
	cl, err := client.New(c.grpc)
	if err != nil {
		return nil, err
	}
	c.cl = cl
	if err := c.waitWhole(ctx, -1); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *dnsplanCluster) start(i int) error {
	p, err := c.ps.start(fmt.Sprintf("dnsplan node%d", i+1), c.cpus, filepath.Join(c.dir, fmt.Sprintf("node%d.log", i+1)), c.args[i]...)
	c.nodes[i] = p
	return err
}

func (c *dnsplanCluster) name() string { return "dnsplan" }

// status asks node i for its own view, within a second.
func (c *dnsplanCluster) status(ctx context.Context, i int) (*pb.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return c.cl.StatusOf(ctx, c.grpc[i])
}

// waitWhole waits until every node answers, all name the same leader and
// node caughtUp (if not -1) has applied what the leader has committed.
func (c *dnsplanCluster) waitWhole(ctx context.Context, caughtUp int) error {
	var exited error
	err := waitFor("dnsplan cluster whole", 60*time.Second, func() bool {
		if exited = exitedOne(c.nodes[:]); exited != nil {
			return true
		}
		var sts [3]*pb.StatusResponse
		for i := range 3 {
			st, err := c.status(ctx, i)
			if err != nil || st.GetLeaderId() == "" || (i > 0 && st.GetLeaderId() != sts[0].GetLeaderId()) {
				return false
			}
			sts[i] = st
		}
		if caughtUp < 0 {
			return true
		}
		for _, st := range sts {
			if st.GetState() == "Leader" {
				return sts[caughtUp].GetAppliedIndex() >= st.GetCommitIndex()
			}
		}
		return false
	})
	return cmp.Or(exited, err)
}

func (c *dnsplanCluster) leader(ctx context.Context) (int, error) {
	for i := range 3 {
		if st, err := c.status(ctx, i); err == nil && st.GetState() == "Leader" {
			return i, nil
		}
	}
	return -1, fmt.Errorf("dnsplan: no node is leader")
}

func (c *dnsplanCluster) kill(i int) { c.nodes[i].kill(syscall.SIGKILL) }

func (c *dnsplanCluster) restart(ctx context.Context, i int) error {
	if err := c.start(i); err != nil {
		return err
	}
	return c.waitWhole(ctx, i)
}

func (c *dnsplanCluster) stop() {
	if c.cl != nil {
		c.cl.Close()
	}
	for _, p := range c.nodes {
		if p != nil {
			p.kill(syscall.SIGTERM)
		}
	}
}

// submit stores n plans of the benchmark's endpoints and returns their
// generations, oldest first.
func (c *dnsplanCluster) submit(ctx context.Context, n int) ([]uint64, error) {
	var gens []uint64
	for range n {
		r, err := c.cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: benchPlan(c.endpoints)})
		if err != nil {
			return nil, fmt.Errorf("submit plan: %w", err)
		}
		if r.GetFrozen() {
			return nil, fmt.Errorf("submit plan: the cluster froze: %s", r.GetFreezeReason())
		}
		gens = append(gens, r.GetGeneration())
	}
	return gens, nil
}

// acquire takes lease name for an hour, held by the holder of the same
// name (an apply's enactor id must be the lease's holder).
func (c *dnsplanCluster) acquire(ctx context.Context, name string) (*pb.Lease, error) {
	l, err := c.cl.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: name, Holder: name, Ttl: durationpb.New(time.Hour)})
	if err != nil {
		return nil, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	return l, nil
}

func (c *dnsplanCluster) apply(ctx context.Context, l *pb.Lease, gen uint64, endpoint string) error {
	r, err := c.cl.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: gen, Endpoints: []string{endpoint},
		LeaseName: l.GetName(), LeaseToken: l.GetToken(), EnactorId: l.GetHolder()})
	if err != nil {
		return err
	}
	if res := r.GetResults(); len(res) != 1 || res[0].GetOutcome() != pb.Outcome_OUTCOME_APPLIED {
		return fmt.Errorf("apply %d to %s: %v", gen, endpoint, res)
	}
	return nil
}

// prepare submits enough plans for maxOps applies spread over the
// endpoints, deleting the plans earlier runs left, and gives each client a
// lease of its own and its share of the endpoints (endpoint e belongs to
// client e mod clients). Client c's i-th apply is the (i/share)-th plan
// on its (i mod share)-th endpoint: every apply is of a newer generation.
func (c *dnsplanCluster) prepare(ctx context.Context, clients, maxOps int) (opFunc, error) {
	if _, err := c.cl.CleanupPlans(ctx, &pb.CleanupPlansRequest{KeepLast: 1}); err != nil {
		return nil, fmt.Errorf("clean up plans: %w", err)
	}
	gens, err := c.submit(ctx, maxOps/c.endpoints+1)
	if err != nil {
		return nil, err
	}
	leases := make([]*pb.Lease, clients)
	for i := range clients {
		if leases[i], err = c.acquire(ctx, "bench/"+strconv.Itoa(i)); err != nil {
			return nil, err
		}
	}
	share := c.endpoints / clients
	return func(ctx context.Context, cl, i int) (bool, error) {
		k := i / share
		if k >= len(gens) {
			return false, nil
		}
		return true, c.apply(ctx, leases[cl], gens[k], endpointName(cl+clients*(i%share)))
	}, nil
}

func (c *dnsplanCluster) prepareFailover(ctx context.Context, trials int) error {
	var err error
	if c.foLease, err = c.acquire(ctx, "bench/failover"); err != nil {
		return err
	}
	c.foGens, err = c.submit(ctx, trials)
	c.foNext = 0
	return err
}

// write is the failover trial's write: the next plan on endpoint 0.
func (c *dnsplanCluster) write(ctx context.Context) error {
	if c.foNext >= len(c.foGens) {
		return fmt.Errorf("dnsplan: no failover plan left")
	}
	if err := c.apply(ctx, c.foLease, c.foGens[c.foNext], endpointName(0)); err != nil {
		return err
	}
	c.foNext++
	return nil
}

// propagation measures, trials times, the time from an acknowledged
// SubmitPlan to every node's DNS serving that generation on endpoint 0:
// the benchmark applies the plan itself, as an enactor holding the lease
// would, then polls each node's _dnsplan TXT record over UDP.
func (c *dnsplanCluster) propagation(ctx context.Context, trials int) ([]time.Duration, error) {
	l, err := c.acquire(ctx, "bench/propagation")
	if err != nil {
		return nil, err
	}
	ep := endpointName(0)
	var out []time.Duration
	for range trials {
		r, err := c.cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: benchPlan(c.endpoints)})
		if err != nil {
			return nil, err
		}
		start := time.Now()
		if err := c.apply(ctx, l, r.GetGeneration(), ep); err != nil {
			return nil, err
		}
		want := fmt.Sprintf("generation=%d ", r.GetGeneration())
		var wg sync.WaitGroup
		errs := make([]error, len(c.dns))
		for i, a := range c.dns {
			wg.Add(1)
			// One poller per node; each ends when its node serves the
			// generation or after 10s.
			go func() {
				defer wg.Done()
				errs[i] = pollTXT(ctx, a, "_dnsplan."+ep, want, 10*time.Second)
			}()
		}
		wg.Wait()
		d := time.Since(start)
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
		out = append(out, d)
		time.Sleep(20 * time.Millisecond) // not back to back: each trial starts from a quiet cluster
	}
	return out, nil
}

func mkdirTemp(parent, pattern string) (string, error) {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	return os.MkdirTemp(parent, pattern)
}
