//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/internal/dnswatch"
	"github.com/dnsplan/dnsplan/probe"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// project is the Raft cluster's project (docker-compose.yml) under test.
const project = "dnsplan-e2e"

func (e *e2e) leader() (int, bool) {
	for i, addr := range grpcAddrs {
		st, err := e.cl.StatusOf(e.ctx(), addr)
		if err == nil && st.GetState() == "Leader" {
			return i, true
		}
	}
	return -1, false
}

// bulkPlan is a valid plan of about 250 KB for endpoints no other step
// uses: always the same records, so applying one never removes capacity.
func bulkPlan() *pb.Plan {
	p := &pb.Plan{PlannerId: "e2e-bulk"}
	for i := range 12 {
		ep := &pb.EndpointPlan{Name: fmt.Sprintf("bulk-%d.dnsplan.test.", i), Ttl: 30}
		for j := range 800 {
			ep.Targets = append(ep.Targets, &pb.Target{Id: fmt.Sprintf("t%d", j), Address: fmt.Sprintf("10.%d.%d.%d", i, j/250, j%250+1), Weight: 1})
		}
		p.Endpoints = append(p.Endpoints, ep)
	}
	return p
}

// statusWatch asks every node for its Status in turn until stopped, and
// keeps the slowest answer and every failure: a node that stops answering
// Status within the client's call timeout has hung.
type statusWatch struct {
	stop, done chan struct{}
	halt       sync.Once
	mu         sync.Mutex
	rounds     int
	slowest    time.Duration
	failures   []string
}

func (e *e2e) watchStatus() *statusWatch {
	w := &statusWatch{stop: make(chan struct{}), done: make(chan struct{})}
	e.t.Cleanup(w.end) // also when the step fails before finish
	go func() {
		defer close(w.done)
		for {
			for i, addr := range grpcAddrs {
				start := time.Now()
				_, err := e.cl.StatusOf(context.Background(), addr)
				took := time.Since(start)
				w.mu.Lock()
				w.slowest = max(w.slowest, took)
				if err != nil {
					w.failures = append(w.failures, fmt.Sprintf("%s after %s: %v", nodes[i], took.Round(time.Millisecond), err))
				}
				w.mu.Unlock()
			}
			w.mu.Lock()
			w.rounds++
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return w
}

// report says what the watch has seen so far.
func (w *statusWatch) report() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.failures) > 0 {
		return fmt.Sprintf("%d Status calls got no answer within the call timeout, first: %s", len(w.failures), w.failures[0])
	}
	return fmt.Sprintf("%d Status rounds, slowest %s", w.rounds, w.slowest.Round(time.Millisecond))
}

// end stops the watch and waits for its last round.
func (w *statusWatch) end() {
	w.halt.Do(func() { close(w.stop) })
	<-w.done
}

func (w *statusWatch) finish(t *testing.T) string {
	t.Helper()
	w.end()
	w.mu.Lock()
	failed := len(w.failures) > 0
	w.mu.Unlock()
	if failed {
		t.Fatal(w.report())
	}
	return w.report()
}

func TestComposeCluster(t *testing.T) {
	e := begin(t, project, "docker-compose.yml")
	c := e.c
	tm := &timings{t: t, start: time.Now()}
	network := c.network()

	tm.step("start the cluster from a clean state", e.up)

	tm.step("kill the leader; a new leader and a new plan applied", func() string {
		l, ok := e.leader()
		if !ok {
			t.Fatal("no leader")
		}
		c.run("kill", nodes[l])
		killed := time.Now()
		var nl int
		waitUntil(t, "a new leader", func() bool {
			i, ok := e.leader()
			nl = i
			return ok && i != l
		})
		toLeader := time.Since(killed)
		gen := e.newGeneration(0, true)
		e.waitServed(others(l), gen)
		// Restart it; it catches up.
		c.run("start", nodes[l])
		catchUp := e.waitServed([]int{l}, gen)
		return fmt.Sprintf("killed %s; new leader %s after %s; generation %d applied; %s caught up in %s",
			nodes[l], nodes[nl], toLeader.Round(time.Millisecond), gen, nodes[l], catchUp.Round(time.Millisecond))
	})

	tm.step("pause the lease-holding enactor past its TTL; another takes over", func() string {
		holder := e.leaseHolder()
		c.run("pause", holder)
		paused := time.Now()
		time.Sleep(leaseTTL + time.Second)
		httpPost(t, "http://"+backends[0]+"/recover")
		var by string
		waitUntil(t, "another enactor applying the next plan", func() bool {
			a := e.applied()
			by = a.GetEnactorId()
			return a != nil && by != holder && a.GetAppliedAt().AsTime().After(paused)
		})
		takeover := time.Since(paused)
		gen := e.applied().GetGeneration()
		// Taken before the command: the enactor wakes while compose,
		// slow on a busy machine, has yet to return.
		unpaused := time.Now()
		c.run("unpause", holder)
		// The woken enactor still acts on its old token; the cluster refuses it.
		var refused string
		waitUntil(t, "the woken enactor's stale write refused", func() bool {
			resp, err := e.cl.ListHistory(e.ctx(), &pb.ListHistoryRequest{})
			if err != nil {
				return false
			}
			for _, ev := range resp.GetEvents() {
				if ev.GetActor() == holder && ev.GetOutcome() == "rejected" && strings.HasPrefix(ev.GetReason(), "fenced") &&
					ev.GetTime().AsTime().After(unpaused.Add(-time.Second)) {
					refused = ev.GetKind()
					return true
				}
			}
			return false
		})
		e.waitServed(all, gen)
		return fmt.Sprintf("paused %s; %s applied generation %d %s after the pause; woken %s's %s refused as fenced",
			holder, by, gen, takeover.Round(time.Millisecond), holder, refused)
	})

	tm.step("an outsider on the compose network gets nothing in", func() string {
		l, _ := e.leader()
		before, err := e.cl.StatusOf(e.ctx(), grpcAddrs[l])
		if err != nil {
			t.Fatal(err)
		}
		// A container with no certificate, on the cluster's own network,
		// tries the API and the Raft port of every node.
		var tried []string
		for _, n := range nodes {
			for _, port := range []string{"9001", "7001"} {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				out, err := exec.CommandContext(ctx, "docker", "run", "--rm", "--network", network, "dnsplan:dev",
					"ctl", "--insecure", "--cluster", n+":"+port, "--timeout", "3s", "status").CombinedOutput()
				cancel()
				if err == nil {
					t.Fatalf("a client with no certificate got an answer from %s:%s:\n%s", n, port, out)
				}
				tried = append(tried, n+":"+port)
			}
		}
		after, err := e.cl.StatusOf(e.ctx(), grpcAddrs[l])
		if err != nil || after.GetTerm() != before.GetTerm() {
			t.Fatalf("the cluster's term moved from %d to %d (%v) while an outsider knocked", before.GetTerm(), after.GetTerm(), err)
		}
		return fmt.Sprintf("refused on %s; term %d unchanged", strings.Join(tried, ", "), after.GetTerm())
	})

	tm.step("recreate a node on an empty volume; it never answers empty", func() string {
		l, _ := e.leader()
		i := (l + 1) % 3
		gen := e.applied().GetGeneration()
		c.run("stop", nodes[i])
		c.run("rm", "-f", nodes[i])
		docker(t, "volume", "rm", project+"_"+nodes[i]+"-data")
		w := dnswatch.Start(dnsAddrs[i], endpoint, nil, 20*time.Millisecond)
		t.Cleanup(w.Stop) // also when the step fails before Finish
		c.run("up", "-d", "--no-deps", nodes[i])
		ready := waitUntil(t, nodes[i]+" answering with addresses", func() bool { _, ok := w.Counts(); return ok >= 10 })
		e.waitServed([]int{i}, gen)
		answers, err := w.Finish(nodes[i])
		if err != nil {
			t.Fatal(err)
		}
		st, err := e.cl.StatusOf(e.ctx(), grpcAddrs[i])
		if err != nil || !st.GetDnsReady() || st.GetDnsFloor() == 0 {
			t.Fatalf("%s status after recreation: %v %v, want DNS ready with a floor learned from the cluster", nodes[i], st, err)
		}
		return fmt.Sprintf("%s recreated empty; floor %d learned; answering %s after up; %s",
			nodes[i], st.GetDnsFloor(), ready.Round(time.Millisecond), answers)
	})

	tm.step("cut a node off; the majority applies, it answers its last state", func() string {
		l, _ := e.leader()
		cut := (l + 1) % 3
		id := c.container(nodes[cut])
		before := servedGeneration(dnsAddrs[cut])
		docker(t, "network", "disconnect", network, id)
		gen := e.newGeneration(1, true)
		e.waitServed(others(cut), gen)
		// Inside the cut-off node's own network namespace, its DNS still
		// answers, with the state it had.
		out := docker(t, "run", "--rm", "--network", "container:"+id, "dnsplan:dev", "probe", "--cluster", "",
			"--dns", "127.0.0.1:5301", "--endpoint", endpoint, "--duration", "2s", "-o", "json", "--http-addr", "")
		var s probe.Summary
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatalf("probe in %s's namespace: %v\n%s", nodes[cut], err, out)
		}
		if s.Generations[endpoint] != before || len(s.Violations) != 0 {
			t.Fatalf("cut-off %s answered %+v, want generation %d", nodes[cut], s, before)
		}
		docker(t, "network", "connect", "--alias", nodes[cut], network, id)
		converge := e.waitServed([]int{cut}, gen)
		return fmt.Sprintf("%s cut off answered generation %d while the others applied %d; converged %s after reconnecting",
			nodes[cut], before, gen, converge.Round(time.Millisecond))
	})

	tm.step("fail a backend; it leaves DNS on every node", func() string {
		// lb-2 is still failed from the step before; now lb-3 fails too.
		gen := e.newGeneration(2, true)
		d := e.waitServed(all, gen)
		for i, addr := range dnsAddrs {
			if n := aRecords(addr); n != 2 {
				t.Fatalf("%s answers %d A records, want 2 (lb-1, lb-4) with lb-2 and lb-3 failed", nodes[i], n)
			}
		}
		for _, b := range backends[:3] {
			httpPost(t, "http://"+b+"/recover")
		}
		return fmt.Sprintf("generation %d on every node %s after it was applied", gen, d.Round(time.Millisecond))
	})

	tm.step("pause the lease holder while MBs of plans arrive; no node hangs", func() string {
		waitUntil(t, "the recovery of the step before applied", func() bool { return aRecords(dnsAddrs[0]) == 4 })
		holder := e.leaseHolder()
		sw := e.watchStatus()
		c.run("pause", holder)
		// The paused enactor's plan watch stops reading while these arrive.
		plan := bulkPlan()
		const plans = 16
		var last uint64
		for range plans {
			r, err := e.cl.SubmitPlan(e.ctx(), &pb.SubmitPlanRequest{Plan: plan})
			if err != nil {
				t.Fatalf("submitting a bulk plan while %s is paused: %v; %s", holder, err, sw.report())
			}
			last = r.GetGeneration()
		}
		// Another enactor applies the newest plan: the last bulk plan, or
		// the planner's next one, which puts its endpoints back into the
		// newest plan as soon as it sees them missing (enactors apply only
		// the newest, so the last bulk plan may be skipped for it).
		var by string
		var reached uint64
		applied := waitUntil(t, "another enactor applying the newest plan", func() bool {
			for _, ep := range []string{"bulk-0.dnsplan.test.", endpoint} {
				a, err := e.cl.GetApplied(e.ctx(), &pb.GetAppliedRequest{Endpoint: ep})
				if err == nil && a.GetGeneration() >= last && a.GetEnactorId() != holder {
					by, reached = a.GetEnactorId(), a.GetGeneration()
					return true
				}
			}
			return false
		})
		// The planner's own plans keep being applied too: lb-1 fails and
		// recovers, so the later steps start from every backend healthy.
		e.newGeneration(0, true)
		gen := e.newGeneration(0, false)
		e.waitServed(all, gen)
		c.run("unpause", holder)
		statuses := sw.finish(t)
		return fmt.Sprintf("paused %s; %d plans of %d KB submitted (newest %d); %s applied generation %d %s later, then planner generation %d; %s",
			holder, plans, proto.Size(plan)/1024, last, by, reached, applied.Round(time.Millisecond), gen, statuses)
	})

	tm.step("restart the whole project; the state is kept", func() string {
		waitUntil(t, "the recovery applied", func() bool { return servedGeneration(dnsAddrs[0]) > 0 && aRecords(dnsAddrs[0]) == 4 })
		before := e.applied().GetGeneration()
		summary := probeSummary(t) // the probe restarts with the project
		c.run("stop")
		c.run("start")
		d := waitUntil(t, "every node serving the kept state", func() bool {
			for _, addr := range dnsAddrs {
				if servedGeneration(addr) < before {
					return false
				}
			}
			return true
		})
		st, err := e.cl.Status(e.ctx())
		if err != nil || st.GetNextGeneration() <= before {
			t.Fatalf("after restart: %v %v, want next generation above %d", st, err, before)
		}
		if n := len(summary.Violations); n != 0 {
			t.Fatalf("before the restart the probe saw %d violations: %+v", n, summary.Violations)
		}
		return fmt.Sprintf("generation %d served again %s after start; probe before restart: %d rounds, 0 violations",
			before, d.Round(time.Millisecond), summary.Rounds)
	})

	tm.step("the probe reports no violation of I1 or I2", func() string {
		time.Sleep(3 * time.Second)
		s := probeSummary(t)
		if s.Count("I1") != 0 || s.Count("I2") != 0 {
			t.Fatalf("probe violations: %+v", s.Violations)
		}
		return fmt.Sprintf("%d rounds since restart, I1 0, I2 0", s.Rounds)
	})

	tm.report("compose")
}
