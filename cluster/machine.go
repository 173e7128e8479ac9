package cluster

import (
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/dnsplan/dnsplan/cluster/fsm"
)

// machine adapts fsm.State to raft.FSM. Raft calls Apply, Snapshot and
// Restore from one goroutine; the gRPC and DNS readers call read and
// changed from many. The etcd store (etcd.go) feeds the same adapter from
// its reader through apply and swap, so both logs apply commands, notify
// watchers and count metrics in one place.
type machine struct {
	// mu guards state: Apply takes it for writing, readers for reading.
	// Stored values are immutable, so readers may keep what they read after
	// releasing the lock.
	mu    sync.RWMutex
	state *fsm.State
	// changedCh is closed and replaced after every apply or restore: a
	// cheap broadcast for watchers and read barriers.
	changedCh chan struct{}

	observe func(fsm.Command, fsm.Result) // metrics hook; called outside mu
}

var _ raft.FSM = (*machine)(nil)

func newMachine(observe func(fsm.Command, fsm.Result)) *machine {
	return &machine{state: fsm.New(), changedCh: make(chan struct{}), observe: observe}
}

// Apply decodes and executes one committed entry. An entry that cannot be
// decoded panics: continuing would let replicas diverge silently.
func (m *machine) Apply(l *raft.Log) any {
	cmd, err := fsm.Decode(l.Data)
	if err != nil {
		panic(fmt.Sprintf("cluster: log entry %d: %v", l.Index, err))
	}
	return m.apply(l.Index, cmd)
}

// apply executes one decoded command committed at index.
func (m *machine) apply(index uint64, cmd fsm.Command) fsm.Result {
	m.mu.Lock()
	res := m.state.Apply(index, cmd)
	ch := m.changedCh
	m.changedCh = make(chan struct{})
	m.mu.Unlock()
	close(ch)
	if m.observe != nil {
		m.observe(cmd, res)
	}
	return res
}

// Snapshot captures the state quickly under the lock (a shallow copy of
// immutable values); encoding and I/O happen later in Persist.
func (m *machine) Snapshot() (raft.FSMSnapshot, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return &snapshot{state: m.state.Clone()}, nil
}

// Restore builds a fresh state from a snapshot and swaps it in.
func (m *machine) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("cluster: reading snapshot: %w", err)
	}
	s, err := fsm.Restore(b)
	if err != nil {
		return err
	}
	m.swap(s)
	return nil
}

// swap replaces the state by s, restored from a snapshot.
func (m *machine) swap(s *fsm.State) {
	m.mu.Lock()
	m.state = s
	ch := m.changedCh
	m.changedCh = make(chan struct{})
	m.mu.Unlock()
	close(ch)
}

// read runs f with the state locked for reading.
func (m *machine) read(f func(*fsm.State)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	f(m.state)
}

// changed returns a channel closed at the next apply or restore, and the
// index applied so far, read atomically together.
func (m *machine) changed() (<-chan struct{}, uint64) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.changedCh, m.state.LastIndex()
}

type snapshot struct{ state *fsm.State }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	b, err := s.state.Marshal()
	if err == nil {
		_, err = sink.Write(b)
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("cluster: writing snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {}
