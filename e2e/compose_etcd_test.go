//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/auth"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// etcdProject is the project of the cluster on the etcd store
// (docker-compose.etcd.yml) under test.
const etcdProject = "dnsplan-etcd-e2e"

var etcdMembers = []string{"etcd1", "etcd2", "etcd3"}

// etcdctl runs etcdctl inside a running etcd member's container (by
// docker exec: quicker than compose's), as the holder of the certificate
// named name (of the project's certs volume).
func (e *e2e) etcdctl(member, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full := append([]string{"exec", e.c.containerOnce(member), "/etcdctl", "--cert", "/certs/" + name + ".crt", "--key", "/certs/" + name + ".key",
		"--command-timeout", "5s"}, args...)
	out, err := exec.CommandContext(ctx, "docker", full...).CombinedOutput()
	return string(out), err
}

// setFreezeOn asks the node at addr alone, with no client retrying
// elsewhere, to unfreeze the cluster: a write that changes nothing should
// it reach the log after all (an append whose answer was lost may commit
// once etcd is back). It returns the node's own answer.
func (e *e2e) setFreezeOn(addr, reason string) error {
	l, err := auth.NewLoader(auth.FilesIn(e.certs, "operator"))
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(l.ClientConfig(""))))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = pb.NewClusterServiceClient(conn).SetFreeze(ctx, &pb.SetFreezeRequest{Frozen: false, Reason: reason})
	return err
}

// oneShot starts a one-shot service's exited container again and returns
// its exit code and output once it has ended.
func (e *e2e) oneShot(service string) (string, string) {
	e.t.Helper()
	id := strings.TrimSpace(e.c.run("ps", "-a", "-q", service))
	docker(e.t, "start", id)
	code := docker(e.t, "wait", id)
	return code, docker(e.t, "logs", "--tail", "5", id)
}

// The compose cluster on the etcd store: three etcd members with TLS and
// authentication, three nodes on them. Only the nodes' certificates may
// write the log in etcd; losing an etcd member and a node together
// leaves the others serving and applying; losing every etcd member leaves
// every node's DNS on the last applied state while writes answer
// UNAVAILABLE; etcd back, everything resumes, and the probe saw no
// violation of I1 or I2 throughout.
func TestComposeEtcd(t *testing.T) {
	e := begin(t, etcdProject, "docker-compose.etcd.yml")
	c := e.c
	tm := &timings{t: t, start: time.Now()}

	tm.step("start the cluster on etcd from a clean state", e.up)

	tm.step("only the nodes' certificates write the log in etcd", func() string {
		if out, err := e.etcdctl("etcd1", "node1", "get", "/dnsplan/head"); err != nil || !strings.Contains(out, "/dnsplan/head") {
			t.Fatalf("node1 reading the log's head in etcd: %v\n%s", err, out)
		}
		var refused []string
		for _, name := range []string{"planner1", "enactor-a", "operator", "etcd2"} {
			out, err := e.etcdctl("etcd1", name, "put", "/dnsplan/log/99999999999999999999", "x")
			if err == nil || !strings.Contains(out, "permission denied") {
				t.Fatalf("%s's certificate writing under /dnsplan/ in etcd: %v\n%s, want permission denied", name, err, out)
			}
			refused = append(refused, name)
		}
		return fmt.Sprintf("node1 reads the log; %s refused (permission denied)", strings.Join(refused, ", "))
	})

	tm.step("kill an etcd member and a node; the rest serve and apply", func() string {
		const member, node = "etcd1", 1
		c.run("kill", member, nodes[node])
		killed := time.Now()
		rest := others(node)
		failed := e.newGeneration(0, true)
		e.waitAnswers(rest, failed, 3)
		recovered := e.newGeneration(0, false)
		e.waitAnswers(rest, recovered, 4)
		applied := time.Since(killed)
		c.run("start", member, nodes[node])
		caughtUp := e.waitAnswers([]int{node}, recovered, 4)
		rejoined := waitUntil(t, member+" healthy again", func() bool {
			out, err := e.etcdctl(member, member, "endpoint", "health")
			return err == nil && strings.Contains(out, "is healthy")
		})
		return fmt.Sprintf("killed %s and %s; generations %d (lb-1 out) and %d (back) served by %s within %s; %s caught up %s, %s healthy %s after start",
			member, nodes[node], failed, recovered, strings.Join([]string{nodes[rest[0]], nodes[rest[1]]}, ", "),
			applied.Round(time.Millisecond), nodes[node], caughtUp.Round(time.Millisecond), member, rejoined.Round(time.Millisecond))
	})

	var served uint64
	tm.step("stop every etcd member; DNS on the last state, writes UNAVAILABLE", func() string {
		served = e.applied().GetGeneration()
		e.waitAnswers(all, served, 4)
		c.run(append([]string{"stop"}, etcdMembers...)...)
		stopped := time.Now()
		unavailable := waitUntil(t, "every node reporting etcd unavailable", func() bool {
			for _, addr := range grpcAddrs {
				st, err := e.cl.StatusOf(e.ctx(), addr)
				if err != nil || st.GetState() != "Unavailable" {
					return false
				}
			}
			return true
		})
		// A write through each node alone, at once: each answers
		// UNAVAILABLE when its append to etcd times out.
		writes := make([]string, len(grpcAddrs))
		errs := make([]error, len(grpcAddrs))
		var wg sync.WaitGroup
		for i, addr := range grpcAddrs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				errs[i] = e.setFreezeOn(addr, "e2e: etcd is down")
				writes[i] = fmt.Sprintf("%s %s", nodes[i], time.Since(start).Round(time.Millisecond))
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("SetFreeze through %s with etcd down: %v, want UNAVAILABLE", nodes[i], err)
			}
		}
		// DNS and stale reads keep answering the last applied state on
		// every node, for a while.
		var rounds int
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); rounds++ {
			for i, addr := range dnsAddrs {
				if g, n := servedGeneration(addr), aRecords(addr); g != served || n != 4 {
					t.Fatalf("%s answers generation %d with %d A records while etcd is down, want %d with 4", nodes[i], g, n, served)
				}
				a, err := e.cl.GetAppliedOf(e.ctx(), grpcAddrs[i], endpoint)
				if err != nil || a.GetGeneration() != served {
					t.Fatalf("stale read on %s while etcd is down: %v %v, want generation %d", nodes[i], a, err, served)
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		return fmt.Sprintf("all nodes Unavailable %s after the stop; SetFreeze UNAVAILABLE (%s); %d rounds of DNS and stale reads on generation %d, %s after the stop",
			unavailable.Round(time.Millisecond), strings.Join(writes, ", "), rounds, served, time.Since(stopped).Round(time.Millisecond))
	})

	tm.step("start etcd again; writes resume, a new plan is applied and served", func() string {
		c.run(append([]string{"start"}, etcdMembers...)...)
		started := time.Now()
		code, out := e.oneShot("etcd-auth")
		if code != "0" || !strings.Contains(out, "nothing to change") {
			t.Fatalf("etcd-auth run again exited %s, want 0 changing nothing:\n%s", code, out)
		}
		waitUntil(t, "a write accepted", func() bool {
			_, err := e.cl.SetFreeze(e.ctx(), &pb.SetFreezeRequest{Frozen: false, Reason: "e2e: etcd is back"})
			return err == nil
		})
		resumed := time.Since(started)
		failed := e.newGeneration(1, true)
		e.waitAnswers(all, failed, 3)
		recovered := e.newGeneration(1, false)
		d := e.waitAnswers(all, recovered, 4)
		if failed <= served {
			t.Fatalf("generation %d after the outage, not above %d", failed, served)
		}
		return fmt.Sprintf("a write accepted %s after start; etcd-auth again changed nothing; generations %d and %d served by every node (the last %s after it was applied)",
			resumed.Round(time.Millisecond), failed, recovered, d.Round(time.Millisecond))
	})

	tm.step("the probe reports no violation of I1 or I2", func() string {
		s := probeSummary(t)
		if s.Count("I1") != 0 || s.Count("I2") != 0 {
			t.Fatalf("probe violations: %+v", s.Violations)
		}
		return fmt.Sprintf("%d rounds, %d queries, I1 0, I2 0, %d windows of unavailability recorded", s.Rounds, s.Queries, len(s.Unavailable))
	})

	tm.report("compose on etcd")
}
