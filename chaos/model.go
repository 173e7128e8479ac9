package chaos

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/dnsplan/dnsplan/contract"
)

// output is what an operation returned, as porcupine sees it.
type output struct {
	Gen   uint64
	Known bool
}

// registerModel is one endpoint's applied generation as I1 says it must
// behave: a register that starts at 0 (nothing applied) and only grows. A
// read returns it; an apply of generation g sets it to max(it, g) and, if
// acknowledged, reports that value (APPLIED reports g, STALE the newer
// generation already there). An apply whose outcome is unknown may or may
// not have happened; porcupine places it anywhere after its call.
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byEndpoint := map[string][]porcupine.Operation{}
		for _, o := range history {
			ep := o.Input.(Op).Endpoint
			byEndpoint[ep] = append(byEndpoint[ep], o)
		}
		var out [][]porcupine.Operation
		for _, ep := range slices.Sorted(maps.Keys(byEndpoint)) {
			out = append(out, byEndpoint[ep])
		}
		return out
	},
	Init: func() any { return uint64(0) },
	Step: func(state, input, out any) (bool, any) {
		s, in, o := state.(uint64), input.(Op), out.(output)
		if in.Kind == "read" {
			return o.Gen == s, s
		}
		next := max(s, in.Gen)
		return !o.Known || o.Gen == next, next
	},
	Equal: func(a, b any) bool { return a.(uint64) == b.(uint64) },
	Hash:  func(s any) uint64 { return s.(uint64) },
	DescribeOperation: func(input, out any) string {
		in, o := input.(Op), out.(output)
		switch {
		case in.Kind == "read":
			return fmt.Sprintf("%s: read → %d", in.Actor, o.Gen)
		case !o.Known:
			return fmt.Sprintf("%s: %s(%d) → ?", in.Actor, in.Kind, in.Gen)
		}
		return fmt.Sprintf("%s: %s(%d) → %d", in.Actor, in.Kind, in.Gen, o.Gen)
	},
	DescribeState: func(s any) string { return fmt.Sprintf("generation %d", s.(uint64)) },
}

// linearizability is the outcome of checking the recorded operations.
type linearizability struct {
	Result porcupine.CheckResult
	info   porcupine.LinearizationInfo
	// Violations has one entry per endpoint whose operations have no
	// linearization, naming the first operation the longest partial
	// linearization could not take.
	Violations []Violation
	// Culprits holds that operation, by endpoint.
	Culprits map[string]Op
}

// checkLinearizable runs porcupine over ops, one partition per endpoint.
// A timeout gives porcupine.Unknown: inconclusive, not a violation.
func checkLinearizable(ops []Op, timeout time.Duration) linearizability {
	history := make([]porcupine.Operation, 0, len(ops))
	clients := map[string]int{}
	for _, o := range ops {
		id, ok := clients[o.Actor]
		if !ok {
			id = len(clients)
			clients[o.Actor] = id
		}
		history = append(history, porcupine.Operation{
			ClientId: id, Input: o, Call: o.Call, Output: output{Gen: o.Out, Known: o.Known}, Return: o.Return,
		})
	}
	res, info := porcupine.CheckOperationsVerbose(registerModel, history, timeout)
	lin := linearizability{Result: res, info: info, Culprits: map[string]Op{}}
	if res != porcupine.Illegal {
		return lin
	}
	partitions := registerModel.Partition(history)
	partials := info.PartialLinearizations()
	for p, part := range partitions {
		longest := 0
		var best []int
		for _, l := range partials[p] {
			if len(l) > longest {
				longest, best = len(l), l
			}
		}
		if longest == len(part) {
			continue // this endpoint's history is linearizable
		}
		in := map[int]bool{}
		for _, id := range best {
			in[id] = true
		}
		// The culprit: of the operations the longest partial
		// linearization left out, the one that returned first.
		culprit := -1
		for id, o := range part {
			if !in[id] && (culprit < 0 || o.Return < part[culprit].Return ||
				o.Return == part[culprit].Return && o.Call < part[culprit].Call) {
				culprit = id
			}
		}
		op := part[culprit].Input.(Op)
		out := part[culprit].Output.(output)
		op.Out, op.Known = out.Gen, out.Known
		lin.Culprits[op.Endpoint] = op
		at := op.Return
		if at == Unknown {
			at = op.Call
		}
		lin.Violations = append(lin.Violations, Violation{
			Invariant: "I1", Source: "linearizability", Endpoint: op.Endpoint, At: at,
			Detail: fmt.Sprintf("the %d operations on the endpoint have no linearization as a register that only grows; "+
				"the longest partial linearization covers %d; the first operation it cannot take: %s", len(part), longest, op),
		})
	}
	slices.SortFunc(lin.Violations, func(a, b Violation) int { return cmp.Compare(a.At, b.At) })
	return lin
}

// visualize writes porcupine's HTML view of the checked history to path,
// with the faults as annotations.
func (l linearizability) visualize(path string, faults []Event) error {
	var notes []porcupine.Annotation
	for _, f := range faults {
		notes = append(notes, porcupine.Annotation{Tag: "faults", Start: f.At, End: f.At, Description: f.Kind, Details: f.String()})
	}
	l.info.AddAnnotations(notes)
	return porcupine.VisualizePath(registerModel, l.info, path)
}

// reduceUnknown shrinks the set of operations whose outcome is unknown
// before the check, which would otherwise grow exponentially with them.
// It never hides a violation: it only removes operations that could
// explain a read, so the history left can only be harder to linearize.
//
//   - Retries of one request (same actor, kind, generation, endpoint and
//     token) are one effect at most: applying a generation to a register
//     that only grows a second time changes nothing. The earliest one is
//     kept; it may take effect anywhere the others could.
//   - When the audit history is complete and shows no more "applied"
//     events for that request than acknowledged applies account for, the
//     unknown attempts changed nothing, and the earliest is dropped too.
func reduceUnknown(ops []Op, audit []AuditEvent, auditComplete bool) (out []Op, dropped int) {
	key := func(kind, actor string, gen uint64, endpoint string, token uint64) string {
		return fmt.Sprintf("%s|%s|%d|%s|%d", kind, actor, gen, endpoint, token)
	}
	effects := map[string]int{}
	for _, e := range audit {
		if (e.Kind == kindApply || e.Kind == kindLegacyApply) && e.Outcome == outcomeApplied {
			// The op of an apply is named like the audit event's kind.
			effects[key(contract.KindName(e.Kind), e.Actor, e.Generation, e.Endpoint, e.Token)]++
		}
	}
	acked := map[string]int{}
	for _, o := range ops {
		if o.Kind != "read" && o.Known && o.Applied {
			acked[key(o.Kind, o.Actor, o.Gen, o.Endpoint, o.Token)]++
		}
	}
	sorted := slices.Clone(ops)
	slices.SortStableFunc(sorted, func(a, b Op) int { return cmp.Compare(a.Call, b.Call) })
	kept := map[string]bool{}
	for _, o := range sorted {
		if o.Kind == "read" || o.Known {
			out = append(out, o)
			continue
		}
		k := key(o.Kind, o.Actor, o.Gen, o.Endpoint, o.Token)
		if kept[k] || (auditComplete && effects[k] <= acked[k]) {
			dropped++
			continue
		}
		kept[k] = true
		out = append(out, o)
	}
	return out, dropped
}
