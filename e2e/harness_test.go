//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/probe"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// The compose clusters as seen from the host (docs/CONTRACT.md, docker
// compose): docker-compose.yml and docker-compose.etcd.yml publish the
// same ports, so one test runs at a time.
var (
	nodes     = []string{"node1", "node2", "node3"}
	grpcAddrs = []string{"127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"}
	dnsAddrs  = []string{"127.0.0.1:5301", "127.0.0.1:5302", "127.0.0.1:5303"}
	enactors  = map[string]string{"enactor-a": "127.0.0.1:8201", "enactor-b": "127.0.0.1:8202", "enactor-c": "127.0.0.1:8203"}
	backends  = []string{"127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083", "127.0.0.1:8084"}
	all       = []int{0, 1, 2}
)

const (
	endpoint = "api.dnsplan.test."
	stepWait = 90 * time.Second // ceiling of one step; a healthy run takes seconds
	leaseTTL = 3 * time.Second  // the enactors' default --lease-ttl
)

// compose runs docker compose (v2) or docker-compose (1.29) on one of the
// repository's compose files under a project name of its own.
type compose struct {
	t       *testing.T
	cmd     []string
	root    string
	project string
	file    string
	ids     map[string]string // containerOnce's
}

func newCompose(t *testing.T, project, file string) *compose {
	_, src, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(src))
	c := &compose{t: t, root: root, project: project, file: file, cmd: []string{"docker-compose"}}
	if exec.Command("docker", "compose", "version").Run() == nil {
		c.cmd = []string{"docker", "compose"}
	}
	return c
}

// network is the project's network: the same name under compose v1 and v2.
func (c *compose) network() string { return c.project + "_dnsplan" }

func (c *compose) run(args ...string) string {
	c.t.Helper()
	out, err := c.try(args...)
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", strings.Join(c.cmd, " "), strings.Join(args, " "), err, out)
	}
	return out
}

func (c *compose) try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	full := append(append(append([]string{}, c.cmd[1:]...), "-p", c.project, "-f", filepath.Join(c.root, c.file)), args...)
	cmd := exec.CommandContext(ctx, c.cmd[0], full...)
	cmd.Dir = c.root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// container returns a service's container id.
func (c *compose) container(service string) string {
	return strings.TrimSpace(c.run("ps", "-q", service))
}

// containerOnce is container, asked once per service: a container keeps
// its id across kill, stop and start (not across recreation), and compose
// takes seconds to answer on a busy machine.
func (c *compose) containerOnce(service string) string {
	if id, ok := c.ids[service]; ok {
		return id
	}
	id := c.container(service)
	if c.ids == nil {
		c.ids = map[string]string{}
	}
	c.ids[service] = id
	return id
}

// timings collects each step's measured time for the final report.
type timings struct {
	t     *testing.T
	start time.Time
	rows  []string
}

func (tm *timings) step(name string, f func() string) {
	tm.t.Helper()
	fmt.Printf("=== step: %s\n", name)
	start := time.Now()
	detail := f()
	row := fmt.Sprintf("%-58s %8s  %s", name, time.Since(start).Round(10*time.Millisecond), detail)
	fmt.Println("    " + row)
	tm.rows = append(tm.rows, row)
}

// report prints every step's row and the total.
func (tm *timings) report(title string) {
	fmt.Printf("\n%s end-to-end summary:\n", title)
	for _, r := range tm.rows {
		fmt.Println("  " + r)
	}
	fmt.Printf("  total %s\n", time.Since(tm.start).Round(time.Second))
}

func waitUntil(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > stepWait {
			t.Fatalf("timed out after %s waiting for %s", stepWait, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// servedGeneration is what one node's DNS says it serves for the endpoint
// (its _dnsplan TXT record), or 0.
func servedGeneration(addr string) uint64 {
	m := new(dns.Msg)
	m.SetQuestion("_dnsplan."+endpoint, dns.TypeTXT)
	r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, addr)
	if err != nil {
		return 0
	}
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			var g uint64
			if _, err := fmt.Sscanf(strings.Join(txt.Txt, " "), "generation=%d", &g); err == nil {
				return g
			}
		}
	}
	return 0
}

func aRecords(addr string) int {
	m := new(dns.Msg)
	m.SetQuestion(endpoint, dns.TypeA)
	r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, addr)
	if err != nil {
		return -1
	}
	return len(r.Answer)
}

func httpPost(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Post(url, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

type e2e struct {
	t  *testing.T
	c  *compose
	cl *client.Client
	// certs holds the CA and the operator's certificate, copied from the
	// project's certs volume at the first up.
	certs string
}

// begin checks that a Docker engine answers, removes what an earlier run
// of the project left, and removes the project again when the test ends
// (after printing the end of its logs if the test failed).
func begin(t *testing.T, project, file string) *e2e {
	t.Helper()
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Fatalf("no Docker engine answers: %v\n%s", err, out)
	}
	c := newCompose(t, project, file)
	c.try("down", "-v", "--remove-orphans")
	e := &e2e{t: t, c: c}
	t.Cleanup(func() {
		if e.cl != nil {
			e.cl.Close()
		}
		if t.Failed() {
			out, _ := c.try("logs", "--no-color", "--tail", "60")
			fmt.Println(out)
		}
		if out, err := c.try("down", "-v", "--remove-orphans"); err != nil {
			fmt.Fprintf(os.Stderr, "cleaning up the compose project: %v\n%s", err, out)
		}
	})
	return e
}

// up starts the project from a clean state, makes the operator's client
// with the certificate the certs service made, and waits until every
// node's DNS answers the first plan.
func (e *e2e) up() string {
	t, c := e.t, e.c
	t.Helper()
	c.run("up", "-d")
	e.certs = t.TempDir()
	id := strings.TrimSpace(c.run("ps", "-a", "-q", "certs"))
	for _, f := range []string{"ca.crt", "operator.crt", "operator.key"} {
		docker(t, "cp", id+":/certs/"+f, filepath.Join(e.certs, f))
	}
	cl, err := e.newClient(grpcAddrs, 3*time.Second, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	e.cl = cl
	d := waitUntil(t, "every node's DNS answering the first plan", func() bool {
		for _, addr := range dnsAddrs {
			if servedGeneration(addr) == 0 || aRecords(addr) < 1 {
				return false
			}
		}
		return true
	})
	return fmt.Sprintf("DNS on every node after %s", d.Round(time.Millisecond))
}

// newClient is a client of addrs with the operator's certificate; the
// caller closes it.
func (e *e2e) newClient(addrs []string, callTimeout, retryBudget time.Duration) (*client.Client, error) {
	l, err := auth.NewLoader(auth.FilesIn(e.certs, "operator"))
	if err != nil {
		return nil, err
	}
	return client.New(addrs, client.WithTLS(l.ClientConfig("")), client.WithCallTimeout(callTimeout), client.WithRetryBudget(retryBudget))
}

func (e *e2e) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

func (e *e2e) applied() *pb.AppliedEndpoint {
	a, err := e.cl.GetApplied(e.ctx(), &pb.GetAppliedRequest{Endpoint: endpoint})
	if err != nil {
		return nil
	}
	return a
}

// newGeneration flips a backend's health so the planner makes a new plan,
// and waits until an enactor has applied it; it returns the generation.
// It waits for a generation newer than every plan stored before the flip
// in which the backend's target (lb-N for backends[N-1]) has the flipped
// health: weight 0 after a failure, above 0 after a recovery. A newer
// generation alone could be a plan stored meanwhile for another reason
// (the planner's answer to an earlier change, or to plans a step
// submitted), and a recovery posted right after would then undo a failure
// the planner never saw.
func (e *e2e) newGeneration(backend int, fail bool) uint64 {
	e.t.Helper()
	before := e.applied().GetGeneration()
	if p, err := e.cl.GetPlan(e.ctx(), &pb.GetPlanRequest{Newest: true}); err == nil {
		before = max(before, p.GetGeneration())
	}
	verb := "recover"
	if fail {
		verb = "fail"
	}
	httpPost(e.t, "http://"+backends[backend]+"/"+verb)
	target := fmt.Sprintf("lb-%d", backend+1)
	var gen uint64
	waitUntil(e.t, fmt.Sprintf("a newer generation applied with %s %sed", target, verb), func() bool {
		a := e.applied()
		gen = a.GetGeneration()
		var weight uint32
		for _, tg := range a.GetTargets() {
			if tg.GetId() == target {
				weight = tg.GetWeight()
			}
		}
		return gen > before && (weight == 0) == fail
	})
	return gen
}

func (e *e2e) waitServed(idx []int, gen uint64) time.Duration {
	e.t.Helper()
	return waitUntil(e.t, fmt.Sprintf("nodes %v serving generation %d", idx, gen), func() bool {
		for _, i := range idx {
			if servedGeneration(dnsAddrs[i]) < gen {
				return false
			}
		}
		return true
	})
}

// waitAnswers waits until every node in idx serves at least generation
// gen with n A records: the answer a backend's failure or recovery moved.
func (e *e2e) waitAnswers(idx []int, gen uint64, n int) time.Duration {
	e.t.Helper()
	return waitUntil(e.t, fmt.Sprintf("nodes %v serving generation %d with %d A records", idx, gen, n), func() bool {
		for _, i := range idx {
			if servedGeneration(dnsAddrs[i]) < gen || aRecords(dnsAddrs[i]) != n {
				return false
			}
		}
		return true
	})
}

func probeSummary(t *testing.T) probe.Summary {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:8301/summary")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s probe.Summary
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// leaseHolder waits for an enactor to hold enactor/0 and returns its id,
// which is also its compose service name.
func (e *e2e) leaseHolder() string {
	e.t.Helper()
	var holder string
	waitUntil(e.t, "an enactor holding enactor/0", func() bool {
		resp, err := e.cl.ListLeases(e.ctx(), &pb.ListLeasesRequest{})
		if err != nil {
			return false
		}
		for _, l := range resp.GetLeases() {
			if l.GetName() == "enactor/0" {
				holder = l.GetHolder()
				return true
			}
		}
		return false
	})
	return holder
}

// others is all but i.
func others(i int) []int {
	var rest []int
	for _, j := range all {
		if j != i {
			rest = append(rest, j)
		}
	}
	return rest
}
