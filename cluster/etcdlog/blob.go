package etcdlog

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ChunkSize is the most bytes one key holds, of a large entry or of a
// snapshot: one chunk per request keeps every request below etcd's default
// limit (--max-request-bytes, 1.5 MiB) with room for the key and the
// request's framing.
const ChunkSize = 1 << 20

// An entry's value starts with a tag: the entry's bytes follow (inline),
// or the description of a blob that holds them (an entry above ChunkSize).
const (
	tagInline byte = 0
	tagBlob   byte = 1
)

// blobRef describes a large entry's bytes: the chunks under blob/<ID>/.
// JSON, so that an operator can read it with etcdctl.
type blobRef struct {
	ID     string `json:"id"`
	Size   int    `json:"size"`
	Chunks int    `json:"chunks"`
	SHA256 string `json:"sha256"`
}

func (l *Log) blobPrefix() string          { return l.prefix + "blob/" }
func (l *Log) blobDir(id string) string    { return l.prefix + "blob/" + id + "/" }
func (l *Log) blobRefPrefix() string       { return l.prefix + "blobref/" }
func (l *Log) blobRefKey(id string) string { return l.prefix + "blobref/" + id }

func chunkName(dir string, n int) string { return fmt.Sprintf("%s%06d", dir, n) }

// writeChunks writes data under dir in chunks of at most ChunkSize, one
// request each (each bounded by the operation's time), and returns how
// many it wrote. Empty data is one empty chunk.
func (l *Log) writeChunks(ctx context.Context, dir string, data []byte) (int, error) {
	n := 0
	for rest := data; ; {
		size := min(len(rest), ChunkSize)
		opCtx, cancel := context.WithTimeout(ctx, l.timeout)
		_, err := l.cli.Put(opCtx, chunkName(dir, n), string(rest[:size]))
		cancel()
		if err != nil {
			return 0, l.wrap(ctx, "writing chunks", err)
		}
		n++
		if rest = rest[size:]; len(rest) == 0 {
			return n, nil
		}
	}
}

// errMissingChunk: a chunk was not there; what that means is the caller's
// to say (a compacted entry, a torn snapshot).
var errMissingChunk = fmt.Errorf("%w: a chunk is missing", ErrInconsistent)

// readChunks reads chunks 0..n-1 under dir, at revision rev (0 for the
// newest), and checks them against size and the hex SHA-256 sum.
func (l *Log) readChunks(ctx context.Context, dir string, n int, rev int64, size int, sum string) ([]byte, error) {
	var data bytes.Buffer
	data.Grow(size)
	for i := range n {
		opCtx, cancel := context.WithTimeout(ctx, l.timeout)
		resp, err := l.cli.Get(opCtx, chunkName(dir, i), clientv3.WithRev(rev))
		cancel()
		if err != nil {
			return nil, l.wrap(ctx, "reading chunks", err)
		}
		if len(resp.Kvs) == 0 {
			return nil, fmt.Errorf("%w: %s", errMissingChunk, chunkName(dir, i))
		}
		data.Write(resp.Kvs[0].Value)
	}
	got := sha256.Sum256(data.Bytes())
	if data.Len() != size || hex.EncodeToString(got[:]) != sum {
		return nil, fmt.Errorf("%w: the chunks under %s do not match their checksum", ErrInconsistent, dir)
	}
	return data.Bytes(), nil
}

// writeBlob writes a large entry's bytes as a new blob and returns the
// entry's value that refers to it.
func (l *Log) writeBlob(ctx context.Context, data []byte) (blobRef, []byte, error) {
	var id [16]byte
	_, _ = rand.Read(id[:])
	sum := sha256.Sum256(data)
	ref := blobRef{ID: hex.EncodeToString(id[:]), Size: len(data), SHA256: hex.EncodeToString(sum[:])}
	n, err := l.writeChunks(ctx, l.blobDir(ref.ID), data)
	if err != nil {
		return blobRef{}, nil, err
	}
	ref.Chunks = n
	b, err := json.Marshal(ref)
	if err != nil {
		return blobRef{}, nil, err
	}
	return ref, append([]byte{tagBlob}, b...), nil
}

// entryData is the bytes of the entry whose value is v: v itself, or the
// blob it refers to. A blob that is gone was removed with its entry by
// Compact: the reader is behind compaction.
func (l *Log) entryData(ctx context.Context, seq uint64, v []byte) ([]byte, error) {
	if len(v) == 0 {
		return nil, fmt.Errorf("%w: entry %d has no tag", ErrInconsistent, seq)
	}
	switch v[0] {
	case tagInline:
		return v[1:], nil
	case tagBlob:
		var ref blobRef
		if err := json.Unmarshal(v[1:], &ref); err != nil {
			return nil, fmt.Errorf("%w: entry %d: %v", ErrInconsistent, seq, err)
		}
		data, err := l.readChunks(ctx, l.blobDir(ref.ID), ref.Chunks, 0, ref.Size, ref.SHA256)
		if errors.Is(err, errMissingChunk) {
			return nil, fmt.Errorf("%w: entry %d's blob is gone", ErrCompacted, seq)
		}
		return data, err
	}
	return nil, fmt.Errorf("%w: entry %d has tag %d", ErrInconsistent, seq, v[0])
}

// dropBlobs removes the blobs of compacted entries (those whose reference
// names a sequence number up to seq) and the blobs no entry refers to that
// were written before revision before: a large Append that failed, or
// whose outcome was unknown and that never committed. The second kind is
// removed only if still unreferenced, in one transaction with the check, and
// an Append commits only if its blob's first chunk is there, in one
// transaction too: an Append that commits later finds its blob gone and
// writes it again, never refers to a removed one.
func (l *Log) dropBlobs(ctx context.Context, seq uint64, before int64) error {
	opCtx, cancel := context.WithTimeout(ctx, l.timeout)
	refs, err := l.cli.Get(opCtx, l.blobRefPrefix(), clientv3.WithPrefix())
	cancel()
	if err != nil {
		return l.wrap(ctx, "compact", err)
	}
	referenced := map[string]bool{}
	for _, kv := range refs.Kvs {
		id := strings.TrimPrefix(string(kv.Key), l.blobRefPrefix())
		at, err := strconv.ParseUint(string(kv.Value), 10, 64)
		if err != nil {
			return fmt.Errorf("%w: %s = %q", ErrInconsistent, kv.Key, kv.Value)
		}
		if at > seq {
			referenced[id] = true
			continue
		}
		if err := l.txn(ctx, "dropping a blob", nil,
			clientv3.OpDelete(l.blobDir(id), clientv3.WithPrefix()),
			clientv3.OpDelete(l.blobRefKey(id))); err != nil {
			return err
		}
	}
	opCtx, cancel = context.WithTimeout(ctx, l.timeout)
	chunks, err := l.cli.Get(opCtx, l.blobPrefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	cancel()
	if err != nil {
		return l.wrap(ctx, "compact", err)
	}
	// An unreferenced blob's age is its oldest chunk's: one swept while its
	// Append still wrote chunks can have lost its first chunk only.
	oldest := map[string]int64{}
	for _, kv := range chunks.Kvs {
		id, _, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), l.blobPrefix()), "/")
		if !ok || referenced[id] {
			continue
		}
		if r, seen := oldest[id]; !seen || kv.CreateRevision < r {
			oldest[id] = kv.CreateRevision
		}
	}
	for id, rev := range oldest {
		if rev < before {
			if err := l.dropUnreferenced(ctx, id); err != nil {
				return err
			}
		}
	}
	return nil
}

// dropUnreferenced removes blob id if no entry refers to it, in one
// transaction with the check.
func (l *Log) dropUnreferenced(ctx context.Context, id string) error {
	return l.txn(ctx, "dropping a blob", []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(l.blobRefKey(id)), "=", 0)},
		clientv3.OpDelete(l.blobDir(id), clientv3.WithPrefix()))
}

// txn runs ops if cmps hold, bounded by the operation's time.
func (l *Log) txn(ctx context.Context, what string, cmps []clientv3.Cmp, ops ...clientv3.Op) error {
	opCtx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	if _, err := l.cli.Txn(opCtx).If(cmps...).Then(ops...).Commit(); err != nil {
		return l.wrap(ctx, what, err)
	}
	return nil
}
