// Package etcdtest runs a real etcd cluster of three members on loopback for
// the tests of the etcd store: the etcd binary that `make tools` builds
// (scripts/install-etcd.sh), each member a process with its own ports and
// data directory, which a test may kill, stop and restart, one at a time or
// all together. Nothing of it is faked: what the tests see is what a node
// would see of an etcd cluster that loses members.
//
// The binary is .tools/bin/etcd at the repository's root, or the file named
// by $DNSPLAN_ETCD. A test that cannot find it fails, saying to run `make
// tools`: a missing etcd must never turn into tests that silently pass.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/dnsplan/dnsplan/internal/loopback"
	"github.com/dnsplan/dnsplan/internal/poll"
)

// BinaryEnv names the environment variable that, when set, is the path of
// the etcd binary to run instead of the one `make tools` builds.
const BinaryEnv = "DNSPLAN_ETCD"

// StartTimeout bounds how long Start, Restart and StartAll wait for a
// member (or the cluster) to answer healthy.
const StartTimeout = 30 * time.Second

// Size is the number of members of a Cluster.
const Size = 3

// Cluster is a running etcd cluster of Size members on loopback. Its
// methods are for one test goroutine; they fail the test on error.
type Cluster struct {
	t       testing.TB
	bin     string
	members []*Member
}

// Member is one etcd process of a Cluster. Its ports and data directory stay
// the same across restarts, so a restarted member rejoins with its data.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	dir       string
	logPath   string // the member's output, kept across restarts
	args      []string

	// mu guards proc and exited: a member is started and stopped by the
	// test goroutine, and cleaned up by t.Cleanup.
	mu     sync.Mutex
	proc   *exec.Cmd
	exited chan struct{} // closed when proc has exited and been waited for
}

// Binary returns the path of the etcd binary, or fails t with what to do.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(BinaryEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("etcdtest: $%s=%s: %v", BinaryEnv, p, err)
		}
		return p
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	p := filepath.Join(root, ".tools", "bin", "etcd")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("etcdtest: no etcd binary at %s: run `make tools` (it builds etcd into .tools/bin), or set $%s", p, BinaryEnv)
	}
	return p
}

// repoRoot is the directory of the module's go.mod, found from the working
// directory (a test runs in its package's directory).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module github.com/dnsplan/dnsplan\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("the repository's root (go.mod of github.com/dnsplan/dnsplan) is not above the working directory")
		}
		dir = parent
	}
}

// Start starts a cluster of Size members and waits until it is healthy. The
// members are killed when the test ends, and their data removed.
func Start(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{t: t, bin: Binary(t)}
	root := t.TempDir()
	var initial []string
	for i := range Size {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: "http://" + loopback.FreeAddr(t),
			PeerURL:   "http://" + loopback.FreeAddr(t),
			dir:       filepath.Join(root, fmt.Sprintf("m%d", i)),
		}
		m.logPath = m.dir + ".log"
		c.members = append(c.members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	// Registered after TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		for _, m := range c.members {
			m.kill()
		}
	})
	// A token of its own per cluster: members of two tests' clusters can
	// never take each other for peers, whatever ports they reuse.
	token := fmt.Sprintf("etcdtest-%d-%d", os.Getpid(), time.Now().UnixNano())
	for _, m := range c.members {
		m.args = []string{
			"--name", m.Name,
			"--data-dir", m.dir,
			"--listen-client-urls", m.ClientURL,
			"--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL,
			"--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			// etcd's own Raft timings: a new leader within a second or two
			// of losing one. Shorter ones cost spurious elections when the
			// machine is busy (a whole test suite on two cores), and a
			// request caught in one waits out etcd's request timeout.
			"--heartbeat-interval", "100",
			"--election-timeout", "1000",
			// Data survives a killed process (it is in the page cache);
			// only a crash of the machine would lose it, which no test does.
			"--unsafe-no-fsync",
			"--log-level", "warn",
		}
		if err := c.start(m); err != nil {
			t.Fatal(err)
		}
	}
	c.waitHealthy(c.members...)
	c.waitLeader()
	return c
}

// Endpoints are the client URLs of every member.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Member returns member i (0 <= i < Size).
func (c *Cluster) Member(i int) *Member { return c.members[i] }

// Client returns a client of the whole cluster (every endpoint), closed
// when the test ends. Its logger is silent: the tests judge what the client
// returns, not what it logs.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	return c.ClientOf(t, c.Endpoints()...)
}

// ClientOf returns a client of the given endpoints only, closed when the
// test ends.
func (c *Cluster) ClientOf(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcdtest: client of %v: %v", endpoints, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Kill kills member i at once (SIGKILL) and waits until it has exited and,
// if a quorum remains, until the remaining members agree on a leader among
// them.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	c.members[i].kill()
	c.waitLeader()
}

// Stop stops member i gracefully (SIGTERM), waiting for it to exit (one
// that does not within 10 seconds is killed) and, if a quorum remains,
// until the remaining members agree on a leader among them.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	c.members[i].stop()
	c.waitLeader()
}

// Restart starts a stopped or killed member i again, on its ports and data,
// and waits until it answers healthy. A member still running is killed
// first.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	m := c.members[i]
	m.kill()
	if err := c.start(m); err != nil {
		c.t.Fatal(err)
	}
	c.waitHealthy(m)
	c.waitLeader()
}

// StopAll kills every member at once: an outage of the whole etcd
// cluster, with every member's data kept for StartAll. (A graceful stop of
// all of them takes etcd seconds of trying to hand leadership over to
// members that are stopping too, and shows a client nothing else.)
func (c *Cluster) StopAll() {
	c.t.Helper()
	for _, m := range c.members {
		m.kill()
	}
}

// StartAll starts every member that is not running, together (a quorum of
// them must be up before any answers healthy), and waits until the cluster
// is healthy.
func (c *Cluster) StartAll() {
	c.t.Helper()
	for _, m := range c.members {
		if !m.running() {
			if err := c.start(m); err != nil {
				c.t.Fatal(err)
			}
		}
	}
	c.waitHealthy(c.members...)
	c.waitLeader()
}

// waitLeader waits, if a quorum of members runs, until every running
// member names the same leader and that leader runs. A member that lost
// its leader goes on naming it until its election timeout passes; a
// request it takes meanwhile is forwarded to a dead leader and lost, and
// the client waits out etcd's request timeout (seven seconds here). Tests
// that kill members wait here instead, so their next request is served.
func (c *Cluster) waitLeader() {
	c.t.Helper()
	var running []*Member
	for _, m := range c.members {
		if m.running() {
			running = append(running, m)
		}
	}
	if len(running) <= Size/2 {
		return
	}
	var eps []string
	for _, m := range running {
		eps = append(eps, m.ClientURL)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatalf("etcdtest: %v", err)
	}
	defer cli.Close()
	var last string
	err = poll.Until(context.Background(), StartTimeout, "a leader among the running members", func() bool {
		ids := map[uint64]bool{}
		var leader uint64
		for _, ep := range eps {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := cli.Status(ctx, ep)
			cancel()
			if err != nil {
				last = err.Error()
				return false
			}
			ids[st.Header.MemberId] = true
			if leader != 0 && st.Leader != leader {
				last = fmt.Sprintf("members name leaders %x and %x", leader, st.Leader)
				return false
			}
			leader = st.Leader
		}
		last = fmt.Sprintf("leader %x is not running", leader)
		return ids[leader]
	})
	if err != nil {
		c.t.Fatalf("etcdtest: %v (%s)", err, last)
	}
}

func (c *Cluster) start(m *Member) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(c.bin, m.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// A member must not outlive the test binary, even one that panicked or
	// timed out before its Cleanup ran.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("etcdtest: starting %s: %w", m.Name, err)
	}
	exited := make(chan struct{})
	// One goroutine per process reaps it, so that stop and kill can wait
	// for the exit without racing each other on cmd.Wait.
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	m.proc, m.exited = cmd, exited
	return nil
}

// waitHealthy waits until each of ms answers /health as healthy (it is
// part of a cluster with a leader) and fails the test, with the tail of
// their logs, if that takes longer than StartTimeout.
func (c *Cluster) waitHealthy(ms ...*Member) {
	c.t.Helper()
	hc := &http.Client{Timeout: time.Second}
	for _, m := range ms {
		err := poll.Until(context.Background(), StartTimeout, m.Name+" healthy", func() bool {
			if !m.running() {
				return false
			}
			resp, err := hc.Get(m.ClientURL + "/health")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
		if err != nil {
			c.t.Fatalf("etcdtest: %v; its log ends:\n%s", err, tail(m.logPath, 2000))
		}
	}
}

// running reports whether m's process is up.
func (m *Member) running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

func (m *Member) kill() { m.signal(syscall.SIGKILL, 0) }

func (m *Member) stop() { m.signal(syscall.SIGTERM, 10*time.Second) }

// signal sends sig to m's process, if it runs, and waits for it to exit; if
// it has not within grace, it is killed.
func (m *Member) signal(sig syscall.Signal, grace time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil {
		return
	}
	_ = m.proc.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-m.exited:
		case <-time.After(grace):
			_ = m.proc.Process.Kill()
		}
	}
	<-m.exited
	m.proc = nil
}

// tail returns the last n bytes of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
