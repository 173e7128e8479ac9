package main

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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/internal/loopback"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// binary is the dnsplan binary built once for the process tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dnsplan-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "dnsplan")
	out, err := exec.Command("go", "build", "-race", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building dnsplan: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// processWait bounds waiting for a process to answer as expected: the
// binary is built with -race, slow to start and to serve.
const processWait = time.Minute

// process is one dnsplan subcommand running as its own process. Its
// output is kept and printed if the test fails; it is killed at the
// test's end if it still runs.
type process struct {
	name string
	cmd  *exec.Cmd
	log  bytes.Buffer // written by exec until Wait returns
	done chan struct{}
	err  error // Wait's result, once done is closed
}

// startProcess runs `dnsplan args...` with env added to the test's
// environment.
func startProcess(t *testing.T, name string, env []string, args ...string) *process {
	t.Helper()
	p := &process{name: name, cmd: exec.Command(binary, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.log, &p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Waits for the process, however it ends, so that stop and the
	// clean-up below can both wait on done.
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", p.name, p.log.String())
		}
	})
	return p
}

// stop sends SIGTERM and fails the test unless the process exits cleanly
// (status 0) within timeout.
func (p *process) stop(t *testing.T, timeout time.Duration) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("%s exited with %v after SIGTERM", p.name, p.err)
		}
	case <-time.After(timeout):
		t.Fatalf("%s did not stop after SIGTERM", p.name)
	}
}

// httpBody returns the body of GET http://addr/path, or "" unless the
// answer is 200 OK.
func httpBody(addr, path string) string {
	r, err := http.Get("http://" + addr + path)
	if err != nil {
		return ""
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	if r.StatusCode != http.StatusOK {
		return ""
	}
	return string(b)
}

// wantReleased fails the test unless the cluster's history records a
// release of a lease by holder, accepted: a role stopped by SIGTERM gives
// its lease back rather than letting it expire.
func wantReleased(t *testing.T, cl *client.Client, holder string) {
	t.Helper()
	hist, err := cl.ListHistory(clustertest.Ctx(t), &pb.ListHistoryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range hist.GetEvents() {
		if ev.GetKind() == "release" && ev.GetActor() == holder && ev.GetOutcome() == "accepted" {
			return
		}
	}
	t.Errorf("%s did not release its lease on SIGTERM", holder)
}

// ctlRun runs `dnsplan ctl` against the cluster and returns its stdout.
func ctlRun(t *testing.T, cluster string, args ...string) (string, error) {
	t.Helper()
	return ctlRunEnv(t, cluster, nil, args...)
}

// ctlRunEnv is ctlRun with more environment variables.
func ctlRunEnv(t *testing.T, cluster string, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append([]string{"ctl"}, args...)...)
	cmd.Env = append(append(os.Environ(), "DNSPLAN_CLUSTER="+cluster), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("ctl %v: %v: %s", args, err, stderr.String())
	}
	return stdout.String(), err
}

// Three `dnsplan node` processes configured through flags and DNSPLAN_*
// variables, on mutual TLS with certificates from `dnsplan certs`, form a
// cluster that `dnsplan ctl` operates with an operator's certificate (and
// without one, cannot); SIGTERM stops a node cleanly.
func TestNodeAndCtlProcesses(t *testing.T) {
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	for _, args := range [][]string{
		{"certs", "init", "--dir", certs},
		{"certs", "issue", "--dir", certs, "--role", "operator", "--name", "ops"},
		{"certs", "issue", "--dir", certs, "--role", "node", "--name", "node1", "--host", "127.0.0.1"},
		{"certs", "issue", "--dir", certs, "--role", "node", "--name", "node2", "--host", "127.0.0.1"},
		{"certs", "issue", "--dir", certs, "--role", "node", "--name", "node3", "--host", "127.0.0.1"},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	operator := []string{"DNSPLAN_TLS_CA=" + filepath.Join(certs, "ca.crt"), "DNSPLAN_TLS_CERT=" + filepath.Join(certs, "ops.crt"), "DNSPLAN_TLS_KEY=" + filepath.Join(certs, "ops.key")}
	ctlRun := func(t *testing.T, cluster string, args ...string) (string, error) {
		t.Helper()
		return ctlRunEnv(t, cluster, operator, args...)
	}
	type node struct {
		id, raft, grpc, dns string
		proc                *process
	}
	var nodes []*node
	var initial, grpcAddrs []string
	for i := 1; i <= 3; i++ {
		n := &node{id: fmt.Sprintf("node%d", i), raft: loopback.FreeAddr(t), grpc: loopback.FreeAddr(t), dns: loopback.FreeDNSAddr(t)}
		nodes = append(nodes, n)
		initial = append(initial, n.id+"="+n.raft)
		grpcAddrs = append(grpcAddrs, n.grpc)
	}
	cluster := strings.Join(grpcAddrs, ",")
	for _, n := range nodes {
		// Some settings as flags, some as environment variables.
		n.proc = startProcess(t, n.id, []string{
			"DNSPLAN_GRPC_ADDR=" + n.grpc,
			"DNSPLAN_DATA_DIR=" + filepath.Join(dir, n.id),
			"DNSPLAN_INITIAL_CLUSTER=" + strings.Join(initial, ","),
			"DNSPLAN_TLS_KEY=" + filepath.Join(certs, n.id+".key"),
		}, "node", "--id", n.id, "--raft-addr", n.raft, "--dns-addr", n.dns,
			"--tls-ca", filepath.Join(certs, "ca.crt"), "--tls-cert", filepath.Join(certs, n.id+".crt"),
			"--http-addr", "", "--heartbeat-timeout", "300ms", "--election-timeout", "300ms")
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := ctlRun(t, cluster, "health")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster never became healthy: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Without a certificate, ctl reaches nothing.
	if _, err := ctlRunEnv(t, cluster, []string{"DNSPLAN_TIMEOUT=2s"}, "health"); err == nil {
		t.Fatal("ctl without a certificate was answered by a TLS cluster")
	}

	planFile := filepath.Join(dir, "plan.json")
	plan := `{"plannerId":"ctl-test","endpoints":[{"name":"api.dnsplan.test.","ttl":30,
	  "targets":[{"id":"lb-a","address":"192.0.2.10","weight":100},{"id":"lb-b","address":"2001:db8::1","weight":50}]}]}`
	if err := os.WriteFile(planFile, []byte(plan), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := ctlRun(t, cluster, "submit", "-f", planFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "1") {
		t.Fatalf("submit printed %q, want generation 1", out)
	}
	out, err = ctlRun(t, cluster, "-o", "json", "plan", "1")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Generation string `json:"generation"`
		Endpoints  []struct {
			Name string `json:"name"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("plan -o json is not JSON: %v\n%s", err, out)
	}
	if got.Generation != "1" || len(got.Endpoints) != 1 || got.Endpoints[0].Name != "api.dnsplan.test." {
		t.Fatalf("plan 1 = %+v", got)
	}
	// A delta: a new endpoint on generation 1, previewed, then stored
	// whole as generation 2.
	deltaFile := filepath.Join(dir, "delta.json")
	if err := os.WriteFile(deltaFile, []byte(`{"plannerId":"ctl-test","endpoints":[{"name":"fips.dnsplan.test.","ttl":30,
	  "targets":[{"id":"lb-a","address":"192.0.2.10","weight":100}]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err = ctlRun(t, cluster, "submit", "--delta", "--dry-run", "-f", deltaFile); err != nil ||
		!strings.Contains(out, "fips.dnsplan.test.") || !strings.Contains(out, "--delta --expect-parent 1") {
		t.Fatalf("delta dry run: %v\n%s", err, out)
	}
	if out, err = ctlRun(t, cluster, "submit", "--delta", "--expect-parent", "1", "-f", deltaFile); err != nil || !strings.HasPrefix(out, "generation 2\n") {
		t.Fatalf("delta: %v\n%s", err, out)
	}
	if out, err = ctlRun(t, cluster, "-o", "json", "plan", "2"); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.Endpoints) != 2 {
		t.Fatalf("plan 2 after a delta adding one endpoint to 1: %v\n%s", err, out)
	}
	if _, err := ctlRun(t, cluster, "submit", "--delta", "--expect-parent", "1", "-f", deltaFile); err == nil || !strings.Contains(err.Error(), "FailedPrecondition: the newest plan is not the expected parent") {
		t.Fatalf("a delta on a parent that moved: %v", err)
	}
	// A bad plan is refused with the contract's code and a non-zero exit.
	if err := os.WriteFile(planFile, []byte(`{"endpoints":[{"name":"api","ttl":30}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ctlRun(t, cluster, "submit", "-f", planFile); err == nil || !strings.Contains(err.Error(), "InvalidArgument") {
		t.Fatalf("invalid plan: %v, want an InvalidArgument failure", err)
	}
	// Each node answers DNS for its zone on --dns-addr.
	for _, n := range nodes {
		m := new(dns.Msg)
		m.SetQuestion("dnsplan.test.", dns.TypeSOA)
		r, _, err := (&dns.Client{Timeout: 3 * time.Second}).Exchange(m, n.dns)
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("%s SOA query: %v %v", n.id, r, err)
		}
	}
	out, err = ctlRun(t, cluster, "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if !strings.Contains(out, n.id) {
			t.Fatalf("status lacks %s:\n%s", n.id, out)
		}
	}

	// SIGTERM stops a node cleanly (exit 0); the other two keep serving.
	nodes[0].proc.stop(t, 20*time.Second)
	deadline = time.Now().Add(30 * time.Second)
	for {
		out, err = ctlRun(t, strings.Join(grpcAddrs[1:], ","), "plans")
		if err == nil && strings.Contains(out, "ctl-test") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("remaining nodes do not serve: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
