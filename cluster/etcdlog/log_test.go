package etcdlog_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/cluster/etcdlog"
	"github.com/dnsplan/dnsplan/internal/etcdtest"
	"github.com/dnsplan/dnsplan/internal/poll"
)

// timeout bounds each operation of the tests' logs: above etcd's own
// request timeout (seven seconds with etcdtest's timings), so that a
// request an election delays on a busy machine completes instead of being
// cut short. outageTimeout is that of a log whose failures a test waits
// for.
const (
	timeout       = 10 * time.Second
	outageTimeout = 2 * time.Second
)

// newLog is a Log on its own client of the given endpoints (all of c's if
// none).
func newLog(t *testing.T, c *etcdtest.Cluster, endpoints ...string) *etcdlog.Log {
	t.Helper()
	return newLogTimeout(t, c, timeout, endpoints...)
}

func newLogTimeout(t *testing.T, c *etcdtest.Cluster, d time.Duration, endpoints ...string) *etcdlog.Log {
	t.Helper()
	if len(endpoints) == 0 {
		endpoints = c.Endpoints()
	}
	return etcdlog.New(c.ClientOf(t, endpoints...), etcdlog.Config{
		Timeout: d,
		Logger:  slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
}

// testWriter sends a logger's lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(b, "\n")))
	return len(b), nil
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func appendOK(t *testing.T, l *etcdlog.Log, data string) etcdlog.Position {
	t.Helper()
	p, err := l.Append(ctxT(t), []byte(data))
	if err != nil {
		t.Fatalf("append %q: %v", data, err)
	}
	return p
}

// reader runs Read in the background and records what it delivers; it
// checks as it goes that each entry follows the previous one.
type reader struct {
	mu   sync.Mutex
	got  []etcdlog.Entry
	bad  error
	done chan error
}

func startReader(t *testing.T, l *etcdlog.Log, after etcdlog.Position) *reader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &reader{done: make(chan error, 1)}
	last := after
	go func() {
		r.done <- l.Read(ctx, after, func(e etcdlog.Entry) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			if e.Seq != last.Seq+1 || e.Revision <= last.Revision {
				r.bad = fmt.Errorf("entry %+v delivered after %+v", e.Position, last)
			}
			last = e.Position
			r.got = append(r.got, e)
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; !errors.Is(err, context.Canceled) {
			t.Errorf("reader ended with %v, want context.Canceled", err)
		}
	})
	return r
}

// waitFor waits until the reader holds at least n entries and returns
// all it holds.
func (r *reader) waitFor(t *testing.T, n int, within time.Duration) []etcdlog.Entry {
	t.Helper()
	err := poll.Until(context.Background(), within, fmt.Sprintf("%d entries", n), func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.got) >= n || r.bad != nil
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bad != nil {
		t.Fatal(r.bad)
	}
	if err != nil {
		t.Fatalf("reader: %v; it has %d", err, len(r.got))
	}
	return append([]etcdlog.Entry(nil), r.got...)
}

func dataOf(es []etcdlog.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, string(e.Data))
	}
	return out
}

// Appends from several processes' clients, all at once, form one log:
// every reader, whenever it starts, gets every entry once, in the same
// order, numbered 1, 2, 3, ... with revisions increasing; each Append's
// position is where its entry is; each writer's entries keep its own
// order; and the log holds exactly the acknowledged appends, plus at most
// once each an append whose outcome was unknown (ErrUnavailable, which an
// election on a busy machine can cause, and which the writer retried).
func TestConcurrentAppendsFormOneLog(t *testing.T) {
	c := etcdtest.Start(t)
	const writers, each = 4, 40
	early := startReader(t, newLog(t, c), etcdlog.Position{})

	type appended struct {
		pos  etcdlog.Position
		data string
	}
	results := make([][]appended, writers)
	// unknown holds the data of appends that failed with ErrUnavailable (an
	// election on a busy machine): each may be in the log, once.
	var (
		mu      sync.Mutex
		unknown = map[string]bool{}
	)
	var wg sync.WaitGroup
	var midway *reader
	for w := range writers {
		// Each writer on its own client, each preferring another member.
		eps := c.Endpoints()
		eps = append(eps[w%len(eps):], eps[:w%len(eps)]...)
		l := newLog(t, c, eps...)
		wg.Go(func() {
			for i := range each {
				for attempt := 0; ; attempt++ {
					data := fmt.Sprintf("w%d-%03d-%d", w, i, attempt)
					p, err := l.Append(context.Background(), []byte(data))
					if errors.Is(err, etcdlog.ErrUnavailable) && attempt < 3 {
						mu.Lock()
						unknown[data] = true
						mu.Unlock()
						continue
					}
					if err != nil {
						t.Errorf("writer %d: append %d: %v", w, i, err)
						return
					}
					results[w] = append(results[w], appended{p, data})
					break
				}
			}
		})
		if w == writers/2 {
			midway = startReader(t, newLog(t, c), etcdlog.Position{})
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	late := startReader(t, newLog(t, c), etcdlog.Position{})

	// Every reader reaches the log's end, and holds the same entries.
	head, err := newLog(t, c).LinearizableRevision(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	all := func(r *reader) []etcdlog.Entry {
		t.Helper()
		if err := poll.Until(context.Background(), 10*time.Second, "the reader at the log's end", func() bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.bad != nil || len(r.got) > 0 && r.got[len(r.got)-1].Revision == head
		}); err != nil {
			t.Fatal(err)
		}
		return r.waitFor(t, 1, time.Second)
	}
	want := all(early)
	for i, e := range want {
		if e.Seq != uint64(i+1) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
	}
	for name, r := range map[string]*reader{"midway": midway, "late": late} {
		got := all(r)
		if len(got) != len(want) {
			t.Fatalf("%s reader has %d entries, the early one %d", name, len(got), len(want))
		}
		for i := range got {
			if got[i].Position != want[i].Position || !bytes.Equal(got[i].Data, want[i].Data) {
				t.Fatalf("%s reader's entry %d is %+v %q, the early reader's %+v %q", name, i, got[i].Position, got[i].Data, want[i].Position, want[i].Data)
			}
		}
	}
	// The log holds exactly what was acknowledged, where Append said, and
	// of the unknown outcomes, at most once each.
	acked := 0
	for w, rs := range results {
		acked += len(rs)
		for i, a := range rs {
			e := want[a.pos.Seq-1]
			if e.Position != a.pos || string(e.Data) != a.data {
				t.Fatalf("writer %d's append %d returned %+v for %q; the log has %+v %q there", w, i, a.pos, a.data, e.Position, e.Data)
			}
			if i > 0 && a.pos.Seq <= rs[i-1].pos.Seq {
				t.Fatalf("writer %d's appends out of order: %+v then %+v", w, rs[i-1].pos, a.pos)
			}
		}
	}
	if acked != writers*each {
		t.Fatalf("%d appends acknowledged, want %d", acked, writers*each)
	}
	held := acked
	for _, e := range want {
		if unknown[string(e.Data)] {
			delete(unknown, string(e.Data)) // a second copy would not count
			held++
		}
	}
	if len(want) != held {
		t.Fatalf("the log has %d entries; %d appends were acknowledged, and %d of unknown outcome are in it", len(want), acked, held-acked)
	}
}

// A reader keeps its place through etcd's failures: a member killed and
// restarted (the one the reader is connected to), and every member stopped
// and started again. While etcd is down an Append fails, within the
// operation's timeout, with ErrUnavailable; afterwards the reader delivers
// what was appended, with no gap and no duplicate.
func TestReaderResumesAcrossEtcdFailures(t *testing.T) {
	c := etcdtest.Start(t)
	w := newLogTimeout(t, c, outageTimeout)
	onlyM0 := startReader(t, newLog(t, c, c.Member(0).ClientURL), etcdlog.Position{})
	all := startReader(t, newLog(t, c), etcdlog.Position{})
	var want []string
	add := func(data string) {
		appendOK(t, w, data)
		want = append(want, data)
	}
	check := func(when string) {
		t.Helper()
		for name, r := range map[string]*reader{"m0's": onlyM0, "the cluster's": all} {
			if got := dataOf(r.waitFor(t, len(want), 15*time.Second)); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s: %s reader got %q, want %q", when, name, got, want)
			}
		}
	}
	add("a")
	add("b")
	check("at the start")

	c.Kill(0)
	add("c") // a quorum remains
	c.Restart(0)
	add("d")
	check("after m0 was killed and restarted")

	c.Kill(1)
	c.Kill(2)
	start := time.Now()
	_, err := w.Append(context.Background(), []byte("lost"))
	if !errors.Is(err, etcdlog.ErrUnavailable) {
		t.Fatalf("append without a quorum: %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > outageTimeout+time.Second {
		t.Fatalf("append without a quorum took %s, its timeout is %s", took, outageTimeout)
	}
	if _, err := w.LinearizableRevision(context.Background()); !errors.Is(err, etcdlog.ErrUnavailable) {
		t.Fatalf("linearizable revision without a quorum: %v, want ErrUnavailable", err)
	}
	c.StopAll()
	c.StartAll()
	add("e")
	add("f")
	// The failed append's outcome is unknown, as ErrUnavailable says: its
	// proposal may wait in the log of the member it reached and be
	// committed once a quorum is back. Either way it is in one place for
	// every reader.
	if got := dataOf(all.waitFor(t, len(want), 15*time.Second)); got[4] == "lost" {
		want = append(want[:4:4], append([]string{"lost"}, want[4:]...)...)
		t.Log("the append that failed without a quorum was committed after the outage")
	}
	check("after an outage of the whole cluster")
}

// Compact removes the entries a snapshot covers: a reader whose position
// is below the snapshot gets ErrCompacted at once and stops, and one at the
// snapshot reads on; one beyond the log's end gets ErrInconsistent. etcd's own history compaction does not stop a reader:
// it catches up from the entries' keys.
func TestCompactedReaderGetsErrCompacted(t *testing.T) {
	c := etcdtest.Start(t)
	l := newLog(t, c)
	var pos []etcdlog.Position
	for i := range 10 {
		pos = append(pos, appendOK(t, l, fmt.Sprint(i+1)))
	}
	if err := l.WriteSnapshot(ctxT(t), pos[5], []byte("state after 6")); err != nil {
		t.Fatal(err)
	}
	if at, err := l.Compact(ctxT(t)); err != nil || at != pos[5] {
		t.Fatalf("compact: %+v, %v; want %+v", at, err, pos[5])
	}
	for _, after := range []etcdlog.Position{{}, pos[2], pos[4]} {
		err := l.Read(ctxT(t), after, func(e etcdlog.Entry) error {
			return fmt.Errorf("delivered %+v", e.Position)
		})
		if !errors.Is(err, etcdlog.ErrCompacted) {
			t.Fatalf("read after %+v: %v, want ErrCompacted", after, err)
		}
	}
	// A reader ahead of the log (an etcd restored from an older backup)
	// stops too: it holds state etcd no longer has.
	beyond := etcdlog.Position{Seq: 20, Revision: pos[9].Revision + 100}
	if err := l.Read(ctxT(t), beyond, func(etcdlog.Entry) error { return nil }); !errors.Is(err, etcdlog.ErrInconsistent) {
		t.Fatalf("read after %+v, beyond the log: %v, want ErrInconsistent", beyond, err)
	}
	if got := dataOf(startReader(t, l, pos[5]).waitFor(t, 4, 5*time.Second)); fmt.Sprint(got) != "[7 8 9 10]" {
		t.Fatalf("reader at the snapshot got %q", got)
	}

	// etcd's history compaction, as its --auto-compaction-retention does.
	head, err := l.LinearizableRevision(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client(t).Compact(ctxT(t), head); err != nil {
		t.Fatal(err)
	}
	if got := dataOf(startReader(t, l, pos[6]).waitFor(t, 3, 5*time.Second)); fmt.Sprint(got) != "[8 9 10]" {
		t.Fatalf("reader after etcd's compaction got %q", got)
	}
}

// A snapshot comes back as it was written, chunked when larger than a
// chunk; the newest wins; Compact removes the older one, its chunks and the
// log entries the newest covers.
func TestSnapshotRoundTrip(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	l := etcdlog.New(cli, etcdlog.Config{Timeout: timeout})
	if _, err := l.NewestSnapshot(ctxT(t)); !errors.Is(err, etcdlog.ErrNoSnapshot) {
		t.Fatalf("newest snapshot of an empty log: %v, want ErrNoSnapshot", err)
	}
	if _, err := l.Compact(ctxT(t)); !errors.Is(err, etcdlog.ErrNoSnapshot) {
		t.Fatalf("compact without a snapshot: %v, want ErrNoSnapshot", err)
	}
	p1 := appendOK(t, l, "one")
	small := []byte("the state after one")
	if err := l.WriteSnapshot(ctxT(t), p1, small); err != nil {
		t.Fatal(err)
	}
	if s, err := l.NewestSnapshot(ctxT(t)); err != nil || s.Position != p1 || !bytes.Equal(s.Data, small) {
		t.Fatalf("newest snapshot: %+v %q, %v; want %+v %q", s.Position, s.Data, err, p1, small)
	}

	p2 := appendOK(t, l, "two")
	appendOK(t, l, "three")
	// Above etcd's request limit (1.5 MiB): three chunks.
	big := make([]byte, 2*etcdlog.ChunkSize+12345)
	rand.NewChaCha8([32]byte{1}).Read(big)
	if err := l.WriteSnapshot(ctxT(t), p2, big); err != nil {
		t.Fatal(err)
	}
	// Writing the same position again changes nothing.
	if err := l.WriteSnapshot(ctxT(t), p2, big); err != nil {
		t.Fatal(err)
	}
	s, err := l.NewestSnapshot(ctxT(t))
	if err != nil || s.Position != p2 || !bytes.Equal(s.Data, big) {
		t.Fatalf("newest snapshot: %+v (%d bytes), %v; want %+v (%d bytes)", s.Position, len(s.Data), err, p2, len(big))
	}
	if n := count(t, cli, fmt.Sprintf("%schunk/%020d/", etcdlog.DefaultPrefix, p2.Revision)); n != 3 {
		t.Fatalf("the big snapshot has %d chunks, want 3", n)
	}

	if at, err := l.Compact(ctxT(t)); err != nil || at != p2 {
		t.Fatalf("compact: %+v, %v; want %+v", at, err, p2)
	}
	for prefix, want := range map[string]int64{
		etcdlog.DefaultPrefix + "log/":   1, // "three"
		etcdlog.DefaultPrefix + "snap/":  1,
		etcdlog.DefaultPrefix + "chunk/": 3,
	} {
		if n := count(t, cli, prefix); n != want {
			t.Fatalf("after compaction %s holds %d keys, want %d", prefix, n, want)
		}
	}
	if s, err := l.NewestSnapshot(ctxT(t)); err != nil || s.Position != p2 || !bytes.Equal(s.Data, big) {
		t.Fatalf("newest snapshot after compaction: %+v, %v", s.Position, err)
	}
}

func count(t *testing.T, cli *clientv3.Client, prefix string) int64 {
	t.Helper()
	resp, err := cli.Get(ctxT(t), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// The registry lists the nodes that keep their leases alive; a node that
// dies (its client gone, no revoke) drops out once its lease expires, and
// one that closes its registration drops out at once. A live one stays
// well past its TTL, and through an etcd outage longer than it.
func TestRegistryListsLiveMembers(t *testing.T) {
	c := etcdtest.Start(t)
	const ttl = 2 * time.Second
	l := newLog(t, c)
	a, err := l.Register(ctxT(t), "node-a", []byte(`{"grpc":"127.0.0.1:1"}`), ttl)
	if err != nil {
		t.Fatal(err)
	}
	dying, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer dying.Close()
	if _, err := etcdlog.New(dying, etcdlog.Config{Timeout: timeout}).Register(ctxT(t), "node-b", []byte("b"), ttl); err != nil {
		t.Fatal(err)
	}
	members := func() string {
		t.Helper()
		ms, err := l.Members(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, m.ID+"="+string(m.Info))
		}
		return fmt.Sprint(out)
	}
	if got := members(); got != `[node-a={"grpc":"127.0.0.1:1"} node-b=b]` {
		t.Fatalf("members: %s", got)
	}

	died := time.Now()
	dying.Close()
	if err := poll.Until(context.Background(), 3*ttl, "node-b's lease to expire", func() bool {
		return members() == `[node-a={"grpc":"127.0.0.1:1"}]`
	}); err != nil {
		t.Fatalf("%v: members %s", err, members())
	}
	if took := time.Since(died); took < ttl/2 {
		t.Fatalf("node-b dropped out %s after its client closed, before its lease could expire", took)
	}
	// node-a has stayed past a TTL by keeping its lease alive.
	time.Sleep(ttl)
	if got := members(); got != `[node-a={"grpc":"127.0.0.1:1"}]` {
		t.Fatalf("members after another TTL: %s", got)
	}
	// An etcd outage longer than the TTL: node-a is listed again once
	// etcd is back, on its old lease (etcd renews every lease when a new
	// leader takes over) or on a new one.
	c.StopAll()
	time.Sleep(ttl + time.Second)
	c.StartAll()
	if err := poll.Until(context.Background(), 5*ttl, "node-a to be listed after the outage", func() bool {
		return members() == `[node-a={"grpc":"127.0.0.1:1"}]`
	}); err != nil {
		t.Fatalf("%v: members %s", err, members())
	}
	time.Sleep(2 * ttl)
	if got := members(); got != `[node-a={"grpc":"127.0.0.1:1"}]` {
		t.Fatalf("members two TTLs after the outage: %s", got)
	}
	if err := a.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got := members(); got != "[]" {
		t.Fatalf("members after node-a closed its registration: %s", got)
	}
}

// A linearizable revision read through another client, on another member,
// is at least that of a write acknowledged before the read began.
func TestLinearizableRevisionCoversAcknowledgedWrites(t *testing.T) {
	c := etcdtest.Start(t)
	writer := newLog(t, c, c.Member(0).ClientURL)
	reader := newLog(t, c, c.Member(2).ClientURL)
	if rev, err := reader.LinearizableRevision(ctxT(t)); err != nil || rev != 0 {
		t.Fatalf("linearizable revision of an empty log: %d, %v; want 0", rev, err)
	}
	for i := range 20 {
		p := appendOK(t, writer, fmt.Sprint(i))
		rev, err := reader.LinearizableRevision(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if rev < p.Revision {
			t.Fatalf("linearizable revision %d after a write acknowledged at %d", rev, p.Revision)
		}
	}
}

// Entries of every size up to MaxEntrySize come back whole, to a reader
// following the log and to one catching up: up to ChunkSize in the entry's
// key, above it in a blob of chunks. Compact removes the blobs of the
// entries it removes, and blobs no entry refers to (an Append that failed
// after writing its chunks); one byte above MaxEntrySize is refused before
// anything is sent.
func TestLargeEntries(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	l := newLog(t, c)
	// A blob an Append wrote and never referred to, before the snapshot
	// below.
	if _, err := cli.Put(ctxT(t), etcdlog.DefaultPrefix+"blob/0123abcd/000000", "orphan"); err != nil {
		t.Fatal(err)
	}
	following := startReader(t, l, etcdlog.Position{})
	sizes := []int{etcdlog.ChunkSize, etcdlog.ChunkSize + 1, 4<<20 + 3, etcdlog.MaxEntrySize}
	var want [][]byte
	var pos []etcdlog.Position
	for i, n := range sizes {
		data := make([]byte, n)
		rand.NewChaCha8([32]byte{byte(i)}).Read(data)
		p, err := l.Append(ctxT(t), data)
		if err != nil {
			t.Fatalf("append of %d bytes: %v", n, err)
		}
		want, pos = append(want, data), append(pos, p)
	}
	catching := startReader(t, l, etcdlog.Position{})
	for name, r := range map[string]*reader{"following": following, "catching-up": catching} {
		got := r.waitFor(t, len(sizes), 10*time.Second)
		for i := range got {
			if got[i].Position != pos[i] || !bytes.Equal(got[i].Data, want[i]) {
				t.Fatalf("%s reader's entry %d: %+v, %d bytes; want %+v, %d bytes", name, i, got[i].Position, len(got[i].Data), pos[i], len(want[i]))
			}
		}
	}
	// The orphan's chunk, and 2 + 5 + 16 of the entries above ChunkSize.
	if n := count(t, cli, etcdlog.DefaultPrefix+"blob/"); n != 24 {
		t.Fatalf("%d chunks of blobs, want 24", n)
	}

	if err := l.WriteSnapshot(ctxT(t), pos[2], []byte("state after three")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Compact(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := count(t, cli, etcdlog.DefaultPrefix+"blob/"); n != 16 {
		t.Fatalf("after compaction %d chunks of blobs, want the last entry's 16", n)
	}
	if n := count(t, cli, etcdlog.DefaultPrefix+"blobref/"); n != 1 {
		t.Fatalf("after compaction %d blob references, want 1", n)
	}
	if got := startReader(t, l, pos[2]).waitFor(t, 1, 10*time.Second); !bytes.Equal(got[0].Data, want[3]) {
		t.Fatal("the entry after the snapshot did not come back whole")
	}

	if _, err := l.Append(ctxT(t), make([]byte, etcdlog.MaxEntrySize+1)); !errors.Is(err, etcdlog.ErrTooLarge) {
		t.Fatalf("append above MaxEntrySize: %v, want ErrTooLarge", err)
	}
}

func TestUnavailable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{etcdlog.ErrUnavailable, true},
		{fmt.Errorf("append: %w", etcdlog.ErrUnavailable), true},
		{context.DeadlineExceeded, true},
		{rpctypes.ErrNoLeader, true},
		{rpctypes.ErrTimeout, true},
		{rpctypes.ErrLeaderChanged, true},
		{rpctypes.ErrTooManyRequests, true},
		{status.Error(codes.Unavailable, "connection refused"), true},
		{rpctypes.ErrCompacted, false},
		{rpctypes.ErrPermissionDenied, false},
		{status.Error(codes.InvalidArgument, "bad"), false},
		{errors.New("other"), false},
	} {
		if got := etcdlog.Unavailable(tc.err); got != tc.want {
			t.Errorf("Unavailable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
