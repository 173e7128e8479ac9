package contract

import (
	"testing"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Every kind and outcome has a word, and the word reads back to it.
func TestHistoryNames(t *testing.T) {
	for v := range pb.HistoryKind_name {
		k := pb.HistoryKind(v)
		if k == 0 {
			continue
		}
		if n := KindName(k); n == "" || ParseKind(n) != k {
			t.Errorf("kind %v: name %q reads back as %v", k, n, ParseKind(n))
		}
	}
	for v := range pb.HistoryOutcome_name {
		o := pb.HistoryOutcome(v)
		if o == 0 {
			continue
		}
		if n := OutcomeName(o); n == "" || ParseOutcome(n) != o {
			t.Errorf("outcome %v: name %q reads back as %v", o, n, ParseOutcome(n))
		}
	}
	if KindName(pb.HistoryKind_HISTORY_KIND_LEGACY_APPLY) != "legacy_apply" || OutcomeName(pb.HistoryOutcome_HISTORY_OUTCOME_APPLIED) != "applied" {
		t.Fatal("names are not the lower-case enum names")
	}
}
