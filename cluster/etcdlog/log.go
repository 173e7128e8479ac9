// Package etcdlog keeps the replicated log of the etcd store: the shared
// log, kept in etcd, that feeds the same pure state machine (cluster/fsm)
// the Raft log feeds, in the manner of Delos and Corfu (a virtual log under
// a replicated state machine). etcd orders and keeps the commands; every
// dnsplan node reads them in order and applies them itself, so the rules
// exist once, in cluster/fsm, whichever log runs under them.
//
// The package knows nothing of commands: an entry is bytes. It offers what a
// node needs of its log: appending (Append), reading in order from any
// position with resumption across etcd outages (Read), the position a
// linearizable read must wait for (LinearizableRevision), snapshots and the
// compaction they allow (WriteSnapshot, NewestSnapshot, Compact), and a
// registry of live nodes kept with etcd leases (Register, Members).
//
// # Key layout
//
// Everything lives under one prefix (Config.Prefix, default "/dnsplan/"):
//
//	<prefix>head                       seq of the newest entry; its mod revision is that entry's revision
//	<prefix>log/<seq, %020d>           one entry, created once and never changed: a tag byte, then
//	                                   the entry's bytes, or (above ChunkSize) a JSON reference to a blob
//	<prefix>blob/<id>/<n, %06d>        a large entry's bytes, in chunks of at most ChunkSize
//	<prefix>blobref/<id>               seq of the entry that refers to blob <id>
//	<prefix>snap/<revision, %020d>     a complete snapshot's description (JSON: seq, revision, size, chunks, sha256)
//	<prefix>chunk/<revision>/<n, %06d> the snapshot's bytes, in chunks of at most ChunkSize
//	<prefix>members/<node id>          a live node's registration, attached to its etcd lease
//
// `etcdctl get --prefix /dnsplan/ --keys-only` lists it. cluster/DESIGN.md
// ("The etcd store") says why it is laid out so.
//
// # Errors
//
// An operation that could not reach an etcd quorum within Config.Timeout
// (no member answers, no leader, a request timed out inside etcd) returns an
// error wrapping ErrUnavailable; the caller maps errors.Is(err,
// ErrUnavailable) to gRPC UNAVAILABLE, as the Raft store's ErrNotLeader.
// An Append that failed so has an unknown outcome: the entry may be in the
// log. The caller's own context ending returns its error (context.Canceled
// or context.DeadlineExceeded), never ErrUnavailable.
package etcdlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultPrefix is the key prefix when Config.Prefix is empty.
const DefaultPrefix = "/dnsplan/"

// DefaultTimeout bounds one operation against etcd when Config.Timeout is
// zero: long enough for etcd to elect a new leader (about a second with its
// defaults) and answer, short enough that a client is told UNAVAILABLE well
// within its own deadline.
const DefaultTimeout = 5 * time.Second

// MaxEntrySize is the largest entry Append takes: the largest gRPC
// message of the system (contract.MaxMessageBytes), so that any command a
// node accepted fits. An entry above ChunkSize is kept in chunks (a blob)
// that its log key refers to, since etcd takes at most 1.5 MiB per request
// by default.
const MaxEntrySize = 16 << 20

var (
	// ErrUnavailable: etcd could not be reached, or had no quorum, within
	// the operation's time. The caller answers UNAVAILABLE; the client
	// retries. See the package comment.
	ErrUnavailable = errors.New("etcd unavailable")
	// ErrCompacted: the entries a reader needs next were deleted by
	// compaction. The reader restores the newest snapshot and reads on from
	// its position.
	ErrCompacted = errors.New("log compacted past the reader's position")
	// ErrTooLarge: an entry above MaxEntrySize.
	ErrTooLarge = errors.New("entry too large for the etcd log")
	// ErrNoSnapshot: no snapshot has been written under the prefix.
	ErrNoSnapshot = errors.New("no snapshot in etcd")
	// ErrInconsistent: the keys under the prefix do not form a log (keys
	// written by something else, or a reader's position from another log).
	ErrInconsistent = errors.New("etcd log is inconsistent")
)

// Config configures a Log.
type Config struct {
	// Prefix is the key prefix everything is kept under (DefaultPrefix if
	// empty). It should end with "/".
	Prefix string
	// Timeout bounds each operation against etcd (DefaultTimeout if zero).
	Timeout time.Duration
	// Logger receives the reader's retries and the registry's renewals.
	Logger *slog.Logger
}

// Position is a place in the log: the sequence number of an entry (1, 2, 3,
// ... with no gaps) and the etcd revision that appended it. Revisions
// increase with sequence numbers but skip values (every write to etcd takes
// one); the revision is what the state machine takes as the entry's index.
// The zero Position is before the first entry.
type Position struct {
	Seq      uint64
	Revision int64
}

// Entry is one entry of the log.
type Entry struct {
	Position
	Data []byte
}

// Log is the log kept in etcd under one prefix. It is safe for concurrent
// use; any number of Logs, in any number of processes, may append to and
// read the same prefix.
type Log struct {
	cli     *clientv3.Client
	prefix  string
	timeout time.Duration
	log     *slog.Logger

	// mu guards head, this Log's newest knowledge of the log's end: where
	// the next Append tries to write first. A stale guess costs one more
	// round trip, never a wrong write (Append compares it in etcd).
	mu   sync.Mutex
	head Position
}

// New returns the log under cfg.Prefix, on cli. The caller owns cli (its
// endpoints, TLS, credentials, keep-alives) and closes it after the Log.
func New(cli *clientv3.Client, cfg Config) *Log {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Log{
		cli:     cli,
		prefix:  cfg.Prefix,
		timeout: cfg.Timeout,
		log:     cfg.Logger.With("component", "etcdlog", "prefix", cfg.Prefix),
	}
}

// The key layout (package comment).

func (l *Log) headKey() string           { return l.prefix + "head" }
func (l *Log) logPrefix() string         { return l.prefix + "log/" }
func (l *Log) logKey(seq uint64) string  { return fmt.Sprintf("%slog/%020d", l.prefix, seq) }
func (l *Log) snapPrefix() string        { return l.prefix + "snap/" }
func (l *Log) snapKey(rev int64) string  { return fmt.Sprintf("%ssnap/%020d", l.prefix, rev) }
func (l *Log) chunkPrefix() string       { return l.prefix + "chunk/" }
func (l *Log) chunkDir(rev int64) string { return fmt.Sprintf("%schunk/%020d/", l.prefix, rev) }
func (l *Log) memberPrefix() string      { return l.prefix + "members/" }

// seqOf parses the sequence number of a log key.
func (l *Log) seqOf(key []byte) (uint64, error) {
	s, ok := strings.CutPrefix(string(key), l.logPrefix())
	if !ok {
		return 0, fmt.Errorf("%w: %q is no log key", ErrInconsistent, key)
	}
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil || len(s) != 20 {
		return 0, fmt.Errorf("%w: %q is no log key", ErrInconsistent, key)
	}
	return seq, nil
}

// parseHead reads the log's end from a Get of the head key.
func parseHead(kvs []*mvccpb.KeyValue) (Position, error) {
	if len(kvs) == 0 {
		return Position{}, nil
	}
	seq, err := strconv.ParseUint(string(kvs[0].Value), 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("%w: head %q", ErrInconsistent, kvs[0].Value)
	}
	return Position{Seq: seq, Revision: kvs[0].ModRevision}, nil
}

// learn records p as the log's end if it is newer than what is known.
func (l *Log) learn(p Position) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p.Seq > l.head.Seq {
		l.head = p
	}
}

// Append adds data as the log's next entry and returns its position. One
// etcd transaction writes the entry at the next sequence number and moves
// the head, only if the head is still where this Log believed it was and
// the entry's key is free; if another appender got there first, the
// transaction returns the new head and Append tries the next number. So
// sequence numbers have no gaps and their order is the order of the
// entries' revisions, whichever process appended them.
//
// An entry above ChunkSize is first written as a blob (chunks under
// blob/<id>/, one request each); the entry's key then holds a reference to
// it, and the transaction commits only if the blob is still there (see
// dropBlobs).
//
// An error wrapping ErrUnavailable means the outcome is unknown: the entry
// may have been appended (the answer was lost), or be appended later (its
// proposal waits in etcd's log for a quorum).
func (l *Log) Append(ctx context.Context, data []byte) (Position, error) {
	if len(data) > MaxEntrySize {
		return Position{}, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(data), MaxEntrySize)
	}
	value := append([]byte{tagInline}, data...)
	var blob *blobRef
	if len(data) > ChunkSize {
		ref, v, err := l.writeBlob(ctx, data)
		if err != nil {
			return Position{}, err
		}
		blob, value = &ref, v
	}
	opCtx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	l.mu.Lock()
	head := l.head
	l.mu.Unlock()
	for {
		seq := head.Seq + 1
		cmps := []clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(l.headKey()), "=", head.Revision),
			clientv3.Compare(clientv3.CreateRevision(l.logKey(seq)), "=", 0),
		}
		ops := []clientv3.Op{
			clientv3.OpPut(l.logKey(seq), string(value)),
			clientv3.OpPut(l.headKey(), strconv.FormatUint(seq, 10)),
		}
		orElse := []clientv3.Op{clientv3.OpGet(l.headKey())}
		if blob != nil {
			first := chunkName(l.blobDir(blob.ID), 0)
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(first), ">", 0))
			ops = append(ops, clientv3.OpPut(l.blobRefKey(blob.ID), strconv.FormatUint(seq, 10)))
			orElse = append(orElse, clientv3.OpGet(first, clientv3.WithCountOnly()))
		}
		resp, err := l.cli.Txn(opCtx).If(cmps...).Then(ops...).Else(orElse...).Commit()
		if err != nil {
			return Position{}, l.wrap(ctx, "append", err)
		}
		if resp.Succeeded {
			p := Position{Seq: seq, Revision: resp.Header.Revision}
			l.learn(p)
			return p, nil
		}
		if blob != nil && resp.Responses[1].GetResponseRange().GetCount() == 0 {
			// Compact removed the blob as unreferenced while this Append
			// was slow, perhaps while it was still writing chunks: remove
			// what is left of it and write it again.
			if err := l.dropUnreferenced(ctx, blob.ID); err != nil {
				return Position{}, err
			}
			ref, v, err := l.writeBlob(ctx, data)
			if err != nil {
				return Position{}, err
			}
			blob, value = &ref, v
			continue
		}
		now, err := parseHead(resp.Responses[0].GetResponseRange().GetKvs())
		if err != nil {
			return Position{}, err
		}
		if now == head {
			// The head is where we thought, so the entry's key was taken:
			// something other than Append wrote under the prefix.
			return Position{}, fmt.Errorf("%w: %s exists beyond the head (seq %d)", ErrInconsistent, l.logKey(seq), head.Seq)
		}
		l.learn(now)
		head = now
	}
}

// LinearizableRevision returns the revision of the newest entry, read from
// an etcd quorum (a linearizable Get of the head): every Append that
// returned before the call began has a revision at most this one. A node
// that has applied its replica up to this revision holds every write
// acknowledged before the read began, and may serve a linearizable read
// from it. It is 0 for a log that has no entry yet.
//
// It is the head's revision, not etcd's current revision, on purpose:
// other writes (snapshots, registrations, other users of the etcd cluster)
// move etcd's revision without adding an entry, and a replica waiting for
// such a revision would wait for an entry that never comes.
func (l *Log) LinearizableRevision(ctx context.Context) (int64, error) {
	opCtx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	resp, err := l.cli.Get(opCtx, l.headKey())
	if err != nil {
		return 0, l.wrap(ctx, "linearizable revision", err)
	}
	head, err := parseHead(resp.Kvs)
	if err != nil {
		return 0, err
	}
	l.learn(head)
	return head.Revision, nil
}

// wrap turns an error of an etcd operation into the package's: the
// caller's context ending as its own error, etcd out of reach as
// ErrUnavailable.
func (l *Log) wrap(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("etcdlog: %s: %w", op, ctx.Err())
	}
	if Unavailable(err) {
		return fmt.Errorf("etcdlog: %s: %w: %v", op, ErrUnavailable, err)
	}
	return fmt.Errorf("etcdlog: %s: %w", op, err)
}

// Unavailable reports whether err, returned by the etcd client, means etcd
// could not serve the request now but may later: no connection, no leader,
// a timeout (the operation's own: Log checks the caller's context first),
// a request etcd refused for load or space. It is true of ErrUnavailable.
func Unavailable(err error) bool {
	if errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	code := status.Code(err)
	if ee := (rpctypes.EtcdError{}); errors.As(err, &ee) {
		code = ee.Code()
	}
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return true
	}
	return false
}
