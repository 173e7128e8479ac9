package contract

import (
	"strings"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// KindName is the word for an audit event's kind, as HistoryEvent.kind
// carries it: the enum's name in lower case without its prefix
// (HISTORY_KIND_LEGACY_APPLY is "legacy_apply").
func KindName(k pb.HistoryKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "HISTORY_KIND_"))
}

// OutcomeName is the word for an audit event's outcome, as
// HistoryEvent.outcome carries it (HISTORY_OUTCOME_APPLIED is "applied").
func OutcomeName(o pb.HistoryOutcome) string {
	return strings.ToLower(strings.TrimPrefix(o.String(), "HISTORY_OUTCOME_"))
}

// ParseKind reads a kind's word back (UNSPECIFIED if it names none): for
// events recorded before the codes existed, which carry only the words.
func ParseKind(s string) pb.HistoryKind {
	return pb.HistoryKind(pb.HistoryKind_value["HISTORY_KIND_"+strings.ToUpper(s)])
}

// ParseOutcome reads an outcome's word back (UNSPECIFIED if it names none).
func ParseOutcome(s string) pb.HistoryOutcome {
	return pb.HistoryOutcome(pb.HistoryOutcome_value["HISTORY_OUTCOME_"+strings.ToUpper(s)])
}
