package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// proc is one server process the benchmark started: a dnsplan node, an etcd
// member or a DNS server. It runs in a process group of its own, so killing
// it kills whatever it forked (NSD's xfrd, for one).
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// procs tracks every process the benchmark started, so that every exit
// path, a signal included, stops them all.
type procs struct {
	// mu guards live; it is held only to add, remove or list entries.
	mu   sync.Mutex
	live map[*proc]bool
}

func newProcs() *procs { return &procs{live: map[*proc]bool{}} }

// start runs argv pinned to cpus (taskset's list syntax, e.g. "1" or "0,1"),
// its output appended to logPath. The process is SIGKILLed if the
// benchmark itself dies (Pdeathsig), so none outlives it.
func (ps *procs) start(name, cpus, logPath string, argv ...string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	args := append([]string{"-c", cpus}, argv...)
	cmd := exec.Command("taskset", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	ps.mu.Lock()
	ps.live[p] = true
	ps.mu.Unlock()
	// One goroutine per process reaps it and closes its log; done tells
	// waiters (kill, exited) that it is gone.
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		ps.mu.Lock()
		delete(ps.live, p)
		ps.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether p has ended on its own, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// kill sends sig to p's process group and waits (at most 10s) until p is
// reaped; a process that ignores SIGTERM gets SIGKILL.
func (p *proc) kill(sig syscall.Signal) {
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// exitedOne returns an error naming the first of ps that has ended.
func exitedOne(ps []*proc) error {
	for _, p := range ps {
		if p == nil {
			continue
		}
		if done, err := p.exited(); done {
			return fmt.Errorf("%s exited (%v): see its log", p.name, err)
		}
	}
	return nil
}

// stopAll kills every live process at once and waits for them.
func (ps *procs) stopAll() {
	ps.mu.Lock()
	var all []*proc
	for p := range ps.live {
		all = append(all, p)
	}
	ps.mu.Unlock()
	for _, p := range all {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	for _, p := range all {
		<-p.done
	}
}

// checkFree fails unless every port is free on 127.0.0.1 for TCP and UDP:
// a benchmark that shares a port with something else measures nothing.
func checkFree(ports ...int) error {
	for _, port := range ports {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("port %d is in use (tcp): choose another --port-base", port)
		}
		l.Close()
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			return fmt.Errorf("port %d is in use (udp): choose another --port-base", port)
		}
		u.Close()
	}
	return nil
}

// waitFree waits (at most 15s) until every port is free: the machine's
// tests draw loopback ports at random, and hold each only briefly.
func waitFree(ports ...int) error {
	err := checkFree(ports...)
	for deadline := time.Now().Add(15 * time.Second); err != nil && time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		err = checkFree(ports...)
	}
	return err
}

// addr is 127.0.0.1:port.
func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// waitFor polls cond every 50ms until it holds or timeout passes.
func waitFor(what string, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
