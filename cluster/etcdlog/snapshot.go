package etcdlog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Snapshot is the state of the state machine after the entry at Position,
// as bytes of the caller's encoding.
type Snapshot struct {
	Position
	Data []byte
}

// snapshotMeta is the value of a snapshot's key: what a reader needs to
// fetch its chunks and check them. It is JSON so that an operator can read
// it with etcdctl.
type snapshotMeta struct {
	Seq      uint64 `json:"seq"`
	Revision int64  `json:"revision"`
	Size     int    `json:"size"`
	Chunks   int    `json:"chunks"`
	SHA256   string `json:"sha256"`
}

// WriteSnapshot stores data as the snapshot at position at: its chunks
// first, then its description under snap/<revision>, so that a reader finds
// only snapshots whose every chunk is written. Writing the snapshot of a
// position that has one changes nothing (every replica's state at one
// position is the same). Each request is bounded by Config.Timeout.
func (l *Log) WriteSnapshot(ctx context.Context, at Position, data []byte) error {
	if at.Seq == 0 || at.Revision <= 0 {
		return fmt.Errorf("etcdlog: snapshot at %+v: not a position of an entry", at)
	}
	key := l.snapKey(at.Revision)
	if exists, err := l.exists(ctx, key); err != nil || exists {
		return err
	}
	sum := sha256.Sum256(data)
	meta := snapshotMeta{Seq: at.Seq, Revision: at.Revision, Size: len(data), SHA256: hex.EncodeToString(sum[:])}
	n, err := l.writeChunks(ctx, l.chunkDir(at.Revision), data)
	if err != nil {
		return err
	}
	meta.Chunks = n
	b, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	return l.put(ctx, key, b)
}

func (l *Log) exists(ctx context.Context, key string) (bool, error) {
	opCtx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	resp, err := l.cli.Get(opCtx, key, clientv3.WithCountOnly())
	if err != nil {
		return false, l.wrap(ctx, "snapshot", err)
	}
	return resp.Count > 0, nil
}

func (l *Log) put(ctx context.Context, key string, val []byte) error {
	opCtx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	if _, err := l.cli.Put(opCtx, key, string(val)); err != nil {
		return l.wrap(ctx, "snapshot", err)
	}
	return nil
}

// NewestSnapshot returns the snapshot of the highest position, or
// ErrNoSnapshot if there is none. Its chunks are read at the revision its
// description was found at, so a Compact that removes it meanwhile cannot
// tear it; if etcd compacted that revision away, it starts over.
func (l *Log) NewestSnapshot(ctx context.Context) (Snapshot, error) {
	for attempt := 1; ; attempt++ {
		s, err := l.newestSnapshot(ctx)
		if errors.Is(err, rpctypes.ErrCompacted) && attempt < 3 {
			continue
		}
		return s, err
	}
}

func (l *Log) newestSnapshot(ctx context.Context) (Snapshot, error) {
	meta, rev, err := l.newestMeta(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	data, err := l.readChunks(ctx, l.chunkDir(meta.Revision), meta.Chunks, rev, meta.Size, meta.SHA256)
	if err != nil {
		if errors.Is(err, rpctypes.ErrCompacted) && ctx.Err() == nil {
			return Snapshot{}, rpctypes.ErrCompacted
		}
		return Snapshot{}, err
	}
	return Snapshot{Position: Position{meta.Seq, meta.Revision}, Data: data}, nil
}

// newestMeta reads the description of the newest snapshot and the
// revision it was read at.
func (l *Log) newestMeta(ctx context.Context) (snapshotMeta, int64, error) {
	opCtx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	resp, err := l.cli.Get(opCtx, l.snapPrefix(), clientv3.WithLastKey()...)
	if err != nil {
		return snapshotMeta{}, 0, l.wrap(ctx, "reading a snapshot", err)
	}
	if len(resp.Kvs) == 0 {
		return snapshotMeta{}, 0, ErrNoSnapshot
	}
	var meta snapshotMeta
	if err := json.Unmarshal(resp.Kvs[0].Value, &meta); err != nil {
		return snapshotMeta{}, 0, fmt.Errorf("%w: %s: %v", ErrInconsistent, resp.Kvs[0].Key, err)
	}
	return meta, resp.Header.Revision, nil
}

// Compact removes what the newest snapshot makes unneeded: the entries up
// to its position and every older snapshot, in one transaction, then the
// blobs of those entries and blobs no entry refers to (dropBlobs), and
// returns that position. A reader whose position is below it then gets
// ErrCompacted and restores the snapshot. With no snapshot it removes
// nothing and returns ErrNoSnapshot.
//
// It removes keys, not etcd's history of them: that is etcd's own
// compaction (--auto-compaction-retention), which the operator sets for the
// whole etcd cluster. Read does not depend on that history.
func (l *Log) Compact(ctx context.Context) (Position, error) {
	for {
		p, done, err := l.compact(ctx)
		if done || err != nil {
			return p, err
		}
	}
}

// compact is one attempt of Compact; done is false if the newest snapshot
// was replaced by a newer one (another node's) while it ran.
func (l *Log) compact(ctx context.Context) (Position, bool, error) {
	meta, _, err := l.newestMeta(ctx)
	if err != nil {
		return Position{}, false, err
	}
	opCtx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	resp, err := l.cli.Txn(opCtx).
		// The snapshot is still there: a Compact to a newer one did not
		// remove it meanwhile.
		If(clientv3.Compare(clientv3.CreateRevision(l.snapKey(meta.Revision)), ">", 0)).
		Then(
			clientv3.OpDelete(l.logPrefix(), clientv3.WithRange(l.logKey(meta.Seq+1))),
			clientv3.OpDelete(l.snapPrefix(), clientv3.WithRange(l.snapKey(meta.Revision))),
			clientv3.OpDelete(l.chunkPrefix(), clientv3.WithRange(l.chunkDir(meta.Revision))),
		).Commit()
	if err != nil {
		return Position{}, false, l.wrap(ctx, "compact", err)
	}
	if !resp.Succeeded {
		return Position{}, false, nil
	}
	// The blobs after the log: a blob is needed as long as its entry is.
	if err := l.dropBlobs(ctx, meta.Seq, meta.Revision); err != nil {
		return Position{}, false, err
	}
	return Position{meta.Seq, meta.Revision}, true, nil
}
