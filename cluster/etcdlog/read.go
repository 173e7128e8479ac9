package etcdlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dnsplan/dnsplan/internal/retry"
)

// readPage is how many entries one range request of a catch-up reads.
const readPage = 64

// Retry pacing of Read while etcd cannot be read: the first pause and the
// longest one. The longest bounds how long a reader stays behind after etcd
// returns.
const (
	readRetryFirst = 50 * time.Millisecond
	readRetryLimit = 2 * time.Second
)

// applyError carries the error of Read's apply function out of Read's loop
// unchanged.
type applyError struct{ err error }

func (e applyError) Error() string { return e.err.Error() }
func (e applyError) Unwrap() error { return e.err }

// errResync: the watch showed something other than the next entry; read
// the log again from the last delivered entry.
var errResync = errors.New("watch out of step with the log")

// Read delivers the entries after position after to apply, one at a time,
// in the log's order, with no gap and no duplicate, and goes on delivering
// each new entry as it is appended. It returns only when ctx ends (ctx's
// error), when apply returns an error (that error), when the next entry
// it needs was removed by compaction (ErrCompacted: the caller restores the
// newest snapshot and reads from its position), or when the keys under the
// prefix are not the log the reader has read so far (ErrInconsistent: for
// instance an etcd restored from a backup older than what the reader
// applied; the node must stop rather than serve state etcd no longer has).
//
// Each round reads the entries after the last one delivered by range
// requests at one revision R, then watches the log from R+1. So a reader
// that fell behind etcd's own history compaction still catches up, from
// the entries' keys, as long as Compact has not removed them.
//
// While etcd is out of reach (no member answers, or the one the reader is
// connected to has lost its leader) Read keeps the entries delivered so
// far and retries, each attempt bounded by Config.Timeout, pausing from
// 50 ms doubling to at most 2 s between attempts and logging each failure;
// it resumes after the last delivered entry once etcd answers again. A
// watch the etcd client re-establishes by itself (a member restarting)
// resumes where it was without a new round.
func (l *Log) Read(ctx context.Context, after Position, apply func(Entry) error) error {
	last := after
	backoff := retry.Backoff{First: readRetryFirst, Limit: readRetryLimit}
	for {
		before := last
		rev, err := l.catchUp(ctx, &last, apply)
		if err == nil {
			err = l.follow(ctx, &last, rev, apply)
		}
		var ae applyError
		switch {
		case errors.As(err, &ae):
			return ae.err
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrCompacted), errors.Is(err, ErrInconsistent):
			return err
		}
		if last != before {
			backoff.Reset()
		}
		l.log.Warn("reading the log: retrying", "after_seq", last.Seq, "after_revision", last.Revision, "err", err)
		if err := retry.Sleep(ctx, backoff.Pause()); err != nil {
			return err
		}
	}
}

// deliver hands e to apply, as the entry after *last.
func deliver(last *Position, e Entry, apply func(Entry) error) error {
	if err := apply(e); err != nil {
		return applyError{err}
	}
	*last = e.Position
	return nil
}

// catchUp delivers every entry after *last that the log holds at one
// revision, and returns that revision.
func (l *Log) catchUp(ctx context.Context, last *Position, apply func(Entry) error) (int64, error) {
	// The head and the first page at one revision: the head says whether
	// entries after *last exist that the page should start with.
	opCtx, cancel := context.WithTimeout(ctx, l.timeout)
	resp, err := l.cli.Txn(opCtx).Then(
		clientv3.OpGet(l.headKey()),
		clientv3.OpGet(l.logKey(last.Seq+1), clientv3.WithRange(clientv3.GetPrefixRangeEnd(l.logPrefix())), clientv3.WithLimit(readPage)),
	).Commit()
	cancel()
	if err != nil {
		return 0, l.wrap(ctx, "read", err)
	}
	rev := resp.Header.Revision
	head, err := parseHead(resp.Responses[0].GetResponseRange().GetKvs())
	if err != nil {
		return 0, err
	}
	l.learn(head)
	switch {
	case head.Seq < last.Seq:
		return 0, fmt.Errorf("%w: the log ends at seq %d, before the reader's %d", ErrInconsistent, head.Seq, last.Seq)
	case head.Seq == last.Seq:
		return rev, nil
	}
	page := resp.Responses[1].GetResponseRange()
	for first := true; ; first = false {
		kvs := page.GetKvs()
		if first {
			// Compact removes a prefix of the log, so the entries after
			// *last are either all there or begin later.
			if len(kvs) == 0 {
				return 0, fmt.Errorf("%w: the reader is at seq %d, the log's entries up to %d are gone", ErrCompacted, last.Seq, head.Seq)
			}
			if seq, err := l.seqOf(kvs[0].Key); err == nil && seq > last.Seq+1 {
				return 0, fmt.Errorf("%w: the reader is at seq %d, the log starts at %d", ErrCompacted, last.Seq, seq)
			}
		}
		for _, kv := range kvs {
			seq, err := l.seqOf(kv.Key)
			if err != nil {
				return 0, err
			}
			if seq != last.Seq+1 || kv.ModRevision <= last.Revision {
				return 0, fmt.Errorf("%w: entry %d at revision %d after %d at %d", ErrInconsistent, seq, kv.ModRevision, last.Seq, last.Revision)
			}
			data, err := l.entryData(ctx, seq, kv.Value)
			if err != nil {
				return 0, err
			}
			if err := deliver(last, Entry{Position{seq, kv.ModRevision}, data}, apply); err != nil {
				return 0, err
			}
		}
		if last.Seq >= head.Seq {
			return rev, nil
		}
		if !page.GetMore() {
			return 0, fmt.Errorf("%w: the log's entries end at %d, its head is %d", ErrInconsistent, last.Seq, head.Seq)
		}
		// The next page, at the same revision; each request has the
		// operation's time (apply may take its own between them).
		opCtx, cancel := context.WithTimeout(ctx, l.timeout)
		r, err := l.cli.Get(opCtx, l.logKey(last.Seq+1), clientv3.WithRange(clientv3.GetPrefixRangeEnd(l.logPrefix())),
			clientv3.WithLimit(readPage), clientv3.WithRev(rev))
		cancel()
		if err != nil {
			return 0, l.wrap(ctx, "read", err)
		}
		page = (*pb.RangeResponse)(r)
	}
}

// follow delivers the entries appended after revision rev, as a watch
// from rev+1 shows them, until the watch ends: an error to retry after
// (etcd out of reach, history compacted, a watch out of step) or ctx's end.
func (l *Log) follow(ctx context.Context, last *Position, rev int64, apply func(Entry) error) error {
	// A watch that requires a leader is cancelled by a member that loses
	// its own, instead of staying open, silent, on a member cut off from
	// the rest.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range l.cli.Watch(wctx, l.logPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if err := wr.Err(); err != nil {
			return l.wrap(ctx, "watch", err)
		}
		for _, ev := range wr.Events {
			if ev.Type != clientv3.EventTypePut {
				continue // a deletion by Compact
			}
			seq, err := l.seqOf(ev.Kv.Key)
			if err != nil {
				return err
			}
			if seq <= last.Seq {
				continue
			}
			if seq != last.Seq+1 || !ev.IsCreate() {
				return fmt.Errorf("%w: seq %d after %d", errResync, seq, last.Seq)
			}
			data, err := l.entryData(ctx, seq, ev.Kv.Value)
			if err != nil {
				return err
			}
			if err := deliver(last, Entry{Position{seq, ev.Kv.ModRevision}, data}, apply); err != nil {
				return err
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("etcdlog: watch: %w: closed", ErrUnavailable)
}
