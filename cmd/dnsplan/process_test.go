package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
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

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ctlRun runs `dnsplan ctl` against the cluster and returns its stdout.
func ctlRun(t *testing.T, cluster string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append([]string{"ctl"}, args...)...)
	cmd.Env = append(os.Environ(), "DNSPLAN_CLUSTER="+cluster)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("ctl %v: %v: %s", args, err, stderr.String())
	}
	return stdout.String(), err
}

// Three `dnsplan node` processes configured through flags and DNSPLAN_*
// variables form a cluster that `dnsplan ctl` operates; SIGTERM stops a
// node cleanly.
func TestNodeAndCtlProcesses(t *testing.T) {
	dir := t.TempDir()
	type proc struct {
		id, raft, grpc, dns string
		cmd                 *exec.Cmd
		log                 *bytes.Buffer
	}
	var procs []*proc
	var initial, grpcAddrs []string
	for i := 1; i <= 3; i++ {
		p := &proc{id: fmt.Sprintf("node%d", i), raft: freePort(t), grpc: freePort(t), dns: freePort(t), log: &bytes.Buffer{}}
		procs = append(procs, p)
		initial = append(initial, p.id+"="+p.raft)
		grpcAddrs = append(grpcAddrs, p.grpc)
	}
	cluster := strings.Join(grpcAddrs, ",")
	for _, p := range procs {
		// Some settings as flags, some as environment variables.
		p.cmd = exec.Command(binary, "node", "--id", p.id, "--raft-addr", p.raft, "--dns-addr", p.dns,
			"--http-addr", "", "--heartbeat-timeout", "300ms", "--election-timeout", "300ms")
		p.cmd.Env = append(os.Environ(),
			"DNSPLAN_GRPC_ADDR="+p.grpc,
			"DNSPLAN_DATA_DIR="+filepath.Join(dir, p.id),
			"DNSPLAN_INITIAL_CLUSTER="+strings.Join(initial, ","),
		)
		p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if p.cmd.ProcessState == nil {
				p.cmd.Process.Kill()
				p.cmd.Wait()
			}
			if t.Failed() {
				t.Logf("%s log:\n%s", p.id, p.log.String())
			}
		})
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
	// A bad plan is refused with the contract's code and a non-zero exit.
	if err := os.WriteFile(planFile, []byte(`{"endpoints":[{"name":"api","ttl":30}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ctlRun(t, cluster, "submit", "-f", planFile); err == nil || !strings.Contains(err.Error(), "InvalidArgument") {
		t.Fatalf("invalid plan: %v, want an InvalidArgument failure", err)
	}
	// Each node answers DNS for its zone on --dns-addr.
	for _, p := range procs {
		m := new(dns.Msg)
		m.SetQuestion("dnsplan.test.", dns.TypeSOA)
		r, _, err := (&dns.Client{Timeout: 3 * time.Second}).Exchange(m, p.dns)
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("%s SOA query: %v %v", p.id, r, err)
		}
	}
	out, err = ctlRun(t, cluster, "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if !strings.Contains(out, p.id) {
			t.Fatalf("status lacks %s:\n%s", p.id, out)
		}
	}

	// SIGTERM stops a node cleanly (exit 0); the other two keep serving.
	victim := procs[0]
	if err := victim.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- victim.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("node exited with %v after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("node did not stop after SIGTERM")
	}
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
