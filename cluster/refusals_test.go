package cluster

import (
	"fmt"
	"testing"

	"github.com/dnsplan/dnsplan/contract"
)

// A node's refusals are gathered per caller, method and reason, bounded,
// and what could not be recorded comes back without growing the bound.
func TestRefusalLogBounded(t *testing.T) {
	var l refusalLog
	denied := fmt.Errorf("%w: no", ErrPermission)
	for range 3 {
		l.add("reader/a", "SetFreeze", contract.ReasonPermission, denied)
	}
	for i := range maxPendingRefusals + 10 {
		l.add(fmt.Sprintf("reader/r%03d", i), "SubmitPlan", contract.ReasonPermission, denied)
	}
	rs := l.take()
	if len(rs) != maxPendingRefusals+1 {
		t.Fatalf("%d refusals, want %d and the overflow", len(rs), maxPendingRefusals)
	}
	if first := rs[0]; first.Caller != "reader/a" || first.Count != 3 || first.ReasonCode != "PERMISSION" || first.Reason != denied.Error() {
		t.Errorf("first refusal %v", first)
	}
	if over := rs[len(rs)-1]; over.Caller != "" || over.Count != 11 {
		t.Errorf("overflow %v, want 11 refusals under no caller", over)
	}
	if again := l.take(); len(again) != 0 {
		t.Fatalf("take left %d refusals", len(again))
	}
	l.add("reader/a", "SetFreeze", contract.ReasonPermission, denied)
	l.putBack(rs)
	back := l.take()
	if len(back) != len(rs) || back[0].Count != 4 || back[len(back)-1].Count != 11 {
		t.Errorf("after putting back: %d refusals, first %v, last %v", len(back), back[0], back[len(back)-1])
	}
}
