package cluster

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Refused calls reach the audit history. A call refused at the edge (its
// caller's role or name may not make it, or it is over its write rate)
// never becomes a command, so each node gathers its refusals per caller,
// method and reason, and proposes them every few seconds
// (Config.RecordRefusalsEvery) as one
// RecordRefusals command (fsm/refusals.go). A flood of refusals thus costs
// the log one small command per node per interval, and the state keeps the
// events apart from the rest of the history, bounded on their own.

const (
	defaultRecordRefusalsEvery = 5 * time.Second
	// maxPendingRefusals bounds the distinct (caller, method, reason) a
	// node holds between two records; refusals past it are counted
	// together, under no caller.
	maxPendingRefusals = 4 * fsm.MaxRefusalsPerCommand
	// maxRefusalReason bounds the message a refusal is recorded with.
	maxRefusalReason = 1 << 10
)

type refusalKey struct{ caller, method, code string }

// refusalLog is what a node refused since its last record.
type refusalLog struct {
	mu      sync.Mutex
	pending map[refusalKey]*pb.Refusal
	// overflow counts refusals past maxPendingRefusals.
	overflow uint64
}

// refuse counts a refused call in the metrics and keeps it for the audit
// history. id is the caller when secured; without TLS there is none.
func (n *Node) refuse(id auth.Identity, secured bool, method string, err error) {
	role, caller := "none", ""
	if secured {
		role, caller = id.Role.String(), id.String()
	}
	method = shortName(method)
	n.metrics.refused.WithLabelValues(role, method).Inc()
	n.refusals.add(caller, method, nodeReason(err), err)
}

func (l *refusalLog) add(caller, method string, code contract.Reason, err error) {
	k := refusalKey{caller, method, string(code)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.pending[k]; r != nil {
		r.Count++
		return
	}
	if len(l.pending) >= maxPendingRefusals {
		l.overflow++
		return
	}
	if l.pending == nil {
		l.pending = map[refusalKey]*pb.Refusal{}
	}
	why := err.Error()
	if len(why) > maxRefusalReason {
		why = why[:maxRefusalReason] // the record's reason is bounded (fsm.validateRefusals)
	}
	l.pending[k] = &pb.Refusal{Caller: caller, Method: method, ReasonCode: k.code, Reason: why, Count: 1}
}

// take empties the log, returning its refusals sorted (callers, methods).
func (l *refusalLog) take() []*pb.Refusal {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*pb.Refusal, 0, len(l.pending)+1)
	for _, r := range l.pending {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *pb.Refusal) int {
		return cmp.Or(cmp.Compare(a.Caller, b.Caller), cmp.Compare(a.Method, b.Method), cmp.Compare(a.ReasonCode, b.ReasonCode))
	})
	if l.overflow > 0 {
		out = append(out, &pb.Refusal{Method: "*", Reason: "refusals past the node's bound, callers not kept", Count: l.overflow})
	}
	l.pending, l.overflow = nil, 0
	return out
}

// putBack returns refusals that could not be recorded, within the bound.
func (l *refusalLog) putBack(rs []*pb.Refusal) {
	for _, r := range rs {
		l.mu.Lock()
		k := refusalKey{r.Caller, r.Method, r.ReasonCode}
		switch cur := l.pending[k]; {
		case r.Method == "*":
			l.overflow += r.Count
		case cur != nil:
			cur.Count += r.Count
		case len(l.pending) >= maxPendingRefusals:
			l.overflow += r.Count
		default:
			if l.pending == nil {
				l.pending = map[refusalKey]*pb.Refusal{}
			}
			l.pending[k] = r
		}
		l.mu.Unlock()
	}
}

// refusalLoop records the node's refusals every RecordRefusalsEvery.
func (n *Node) refusalLoop() {
	tick := time.NewTicker(n.cfg.RecordRefusalsEvery)
	defer tick.Stop()
	var waiting bool // logged that the members' versions hold records back
	for {
		select {
		case <-n.closing:
			return
		case <-tick.C:
		}
		rs := n.refusals.take()
		for len(rs) > 0 {
			batch := rs[:min(len(rs), fsm.MaxRefusalsPerCommand)]
			err := n.recordRefusals(batch)
			if err != nil {
				n.refusals.putBack(rs)
				if status.Code(err) == codes.FailedPrecondition {
					if !waiting {
						n.log.Info("refused calls wait to be recorded until every member's version knows the command", "err", err)
					}
					waiting = true
				} else if !errors.Is(err, context.Canceled) {
					n.log.Debug("recording refused calls", "err", err)
				}
				break
			}
			waiting = false
			rs = rs[len(batch):]
		}
	}
}

// recordRefusals proposes one batch, through the leader, as this node.
func (n *Node) recordRefusals(rs []*pb.Refusal) error {
	ctx, cancel := n.callContext(n.cfg.ApplyTimeout)
	defer cancel()
	req := &pb.RecordRefusalsRequest{NodeId: n.cfg.ID, Refusals: rs}
	_, err := call(ctx, n, pb.ClusterService_RecordRefusals_FullMethodName, req, func(ctx context.Context) (*pb.RecordRefusalsResponse, error) {
		return (&clusterService{c: n}).RecordRefusals(ctx, req)
	})
	return err
}
