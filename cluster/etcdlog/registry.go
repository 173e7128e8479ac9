package etcdlog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dnsplan/dnsplan/internal/retry"
)

// Member is one live node of the registry: its id and what it registered
// (its addresses and versions, in the caller's encoding).
type Member struct {
	ID   string
	Info []byte
}

// Registration keeps one node's key in the registry alive. The key is
// attached to an etcd lease of the registration's TTL, which the etcd
// client keeps alive; if the lease is lost anyway (etcd was out of reach
// for longer than the TTL, so etcd expired it), the registration grants a
// new lease and writes the key again as soon as etcd answers. A node that
// dies stops renewing, and etcd removes its key one TTL later.
type Registration struct {
	l    *Log
	id   string
	info []byte
	ttl  int64 // seconds

	cancel context.CancelFunc
	done   chan struct{}
	// lease is the lease of the key now; written by the keeping goroutine
	// only before it starts and after each re-grant, read by Close after
	// that goroutine has ended.
	lease clientv3.LeaseID
}

// Register writes id's key, holding info, on a lease of ttl (whole
// seconds, at least one; etcd may raise it to its own minimum) and keeps it
// alive until Close. The first write is made before Register returns, so
// a node that could not register learns it (ErrUnavailable when etcd is
// out of reach).
func (l *Log) Register(ctx context.Context, id string, info []byte, ttl time.Duration) (*Registration, error) {
	if id == "" || strings.Contains(id, "/") {
		return nil, fmt.Errorf("etcdlog: register: member id %q must be non-empty, without '/'", id)
	}
	r := &Registration{l: l, id: id, info: info, ttl: max(int64(ttl/time.Second), 1), done: make(chan struct{})}
	lease, err := r.grant(ctx)
	if err != nil {
		return nil, err
	}
	r.lease = lease
	kctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	// The keeping goroutine: it keeps the lease alive and, when the lease
	// is lost, registers again. It ends with Close, or when the client is
	// closed (the process is going away).
	go r.keep(kctx)
	return r, nil
}

// grant takes a new lease and writes the key on it.
func (r *Registration) grant(ctx context.Context) (clientv3.LeaseID, error) {
	l := r.l
	opCtx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	g, err := l.cli.Grant(opCtx, r.ttl)
	if err != nil {
		return 0, l.wrap(ctx, "register", err)
	}
	if _, err := l.cli.Put(opCtx, l.memberPrefix()+r.id, string(r.info), clientv3.WithLease(g.ID)); err != nil {
		return 0, l.wrap(ctx, "register", err)
	}
	return g.ID, nil
}

func (r *Registration) keep(ctx context.Context) {
	defer close(r.done)
	l := r.l
	stopped := func() bool { return ctx.Err() != nil || l.cli.Ctx().Err() != nil }
	backoff := retry.Backoff{First: 100 * time.Millisecond, Limit: 2 * time.Second}
	for {
		// The client renews the lease about every third of its TTL; the
		// channel closes when a renewal finds the lease expired, or none
		// succeeded within a TTL.
		alive, err := l.cli.KeepAlive(ctx, r.lease)
		if err == nil {
			for range alive {
				backoff.Reset()
			}
		}
		if stopped() {
			return
		}
		// The lease is gone: etcd expired it while out of reach, or it was
		// revoked. Register again once etcd answers.
		l.log.Warn("registry: lease lost, registering again", "member", r.id, "err", err)
		for {
			if retry.Sleep(ctx, backoff.Pause()) != nil {
				return
			}
			lease, err := r.grant(ctx)
			if err == nil {
				r.lease = lease
				break
			}
			if stopped() {
				return
			}
			l.log.Warn("registry: registering again", "member", r.id, "err", err)
		}
	}
}

// Close stops keeping the registration alive and revokes its lease, which
// removes the key at once (if etcd answers; otherwise it goes one TTL
// later).
func (r *Registration) Close(ctx context.Context) error {
	r.cancel()
	<-r.done
	opCtx, cancel := context.WithTimeout(ctx, r.l.timeout)
	defer cancel()
	if _, err := r.l.cli.Revoke(opCtx, r.lease); err != nil {
		return r.l.wrap(ctx, "unregister", err)
	}
	return nil
}

// Unregister removes id's key from the registry now, revoking the lease
// it is attached to (as a node's own Close does), and reports whether
// there was one. It is for a node that died: its key would otherwise stay
// one TTL. A node still running finds its lease gone and registers again.
func (l *Log) Unregister(ctx context.Context, id string) (bool, error) {
	opCtx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	key := l.memberPrefix() + id
	resp, err := l.cli.Get(opCtx, key)
	if err != nil {
		return false, l.wrap(ctx, "unregister", err)
	}
	if len(resp.Kvs) == 0 {
		return false, nil
	}
	if lease := clientv3.LeaseID(resp.Kvs[0].Lease); lease != clientv3.NoLease {
		_, err = l.cli.Revoke(opCtx, lease)
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			err = nil // expired meanwhile, and its key with it
		}
	} else {
		_, err = l.cli.Delete(opCtx, key)
	}
	if err != nil {
		return false, l.wrap(ctx, "unregister", err)
	}
	return true, nil
}

// Members lists the live members of the registry, ordered by id.
func (l *Log) Members(ctx context.Context) ([]Member, error) {
	opCtx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	resp, err := l.cli.Get(opCtx, l.memberPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, l.wrap(ctx, "members", err)
	}
	ms := make([]Member, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		ms = append(ms, Member{ID: strings.TrimPrefix(string(kv.Key), l.memberPrefix()), Info: kv.Value})
	}
	return ms, nil
}
