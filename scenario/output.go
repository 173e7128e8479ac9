package scenario

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/dnsplan/dnsplan/contract"
)

// WriteText prints a report for people: the timeline (time since the first
// step, actor, action, the cluster's answer, then what each node's DNS
// answered for the regional endpoint), the findings and the verdict.
func WriteText(w io.Writer, rep *Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "== aws-2025 replayed against the %s design ==\n", strings.ToUpper(string(rep.Design)))
	if rep.Variant != "" {
		fmt.Fprintf(&b, "!! variant: %s\n", rep.Variant)
	}
	fmt.Fprintf(&b, "three nodes on loopback; after each step, every node's DNS is asked for %s (A, and _dnsplan TXT for the generation)\n\n", rep.Endpoint)
	for i, ev := range rep.Timeline {
		fmt.Fprintf(&b, "%3d  %+7.3fs  %-10s  %s\n", i+1, ev.Offset.Seconds(), ev.Actor, ev.Action)
		fmt.Fprintf(&b, "%24s→ %s\n", "", ev.Result)
		for _, line := range dnsLines(ev.DNS) {
			fmt.Fprintf(&b, "%24sDNS %s\n", "", line)
		}
	}
	fmt.Fprintf(&b, "\nfindings:\n")
	if len(rep.Findings) == 0 {
		fmt.Fprintf(&b, "  - none: no empty answer, no generation going back\n")
	}
	for _, f := range rep.Findings {
		fmt.Fprintf(&b, "  - %s\n", f)
	}
	fmt.Fprintf(&b, "checker (package probe, %d rounds beside the script): %d I1 and %d I2 violations\n", rep.Checker.Rounds, rep.Checker.I1, rep.Checker.I2)
	for _, v := range rep.Checker.First {
		fmt.Fprintf(&b, "  - %s\n", v)
	}
	verdict := func(label string, v Verdict) {
		fmt.Fprintf(&b, "%-18s empty answer observed: %-3s  regressed: %-3s  recovered: %s\n",
			label, yesNo(v.EmptyAnswerObserved), yesNo(v.Regressed), yesNo(v.Recovered))
	}
	b.WriteString("\n")
	verdict("verdict ("+string(rep.Design)+"):", rep.Verdict)
	verdict("expected:", rep.Expected)
	if rep.AsExpected {
		fmt.Fprintf(&b, "=> AS EXPECTED: %s (took %s)\n", explain(rep.Design), rep.Took.Round(1e6))
	} else {
		fmt.Fprintf(&b, "=> NOT AS EXPECTED for the %s design (took %s)\n", rep.Design, rep.Took.Round(1e6))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// explain says what an as-expected verdict means for a design.
func explain(d contract.Design) string {
	if d == contract.Legacy {
		return "the old design emptied the endpoint, served an old plan, and could not heal itself, as at AWS"
	}
	return "the fixed design refused the late write, kept every applied plan, never answered empty, and applied the next plan by itself"
}

func yesNo(b bool) string {
	if b {
		return "YES"
	}
	return "no"
}

// dnsLines formats one step's answers: one line when every node answered
// the same, else one per node.
func dnsLines(answers []Answer) []string {
	if len(answers) == 0 {
		return nil
	}
	same := true
	for _, a := range answers[1:] {
		if a.String() != answers[0].String() {
			same = false
		}
	}
	if same {
		nodes := make([]string, len(answers))
		for i, a := range answers {
			nodes[i] = a.Node
		}
		return []string{fmt.Sprintf("%s: %s", strings.Join(nodes, ","), answers[0])}
	}
	lines := make([]string, len(answers))
	for i, a := range answers {
		lines[i] = fmt.Sprintf("%s: %s", a.Node, a)
	}
	return lines
}

// WriteJSON prints a report as one JSON object on one line (JSON Lines:
// one line per design when several run).
func WriteJSON(w io.Writer, rep *Report) error {
	out := *rep
	out.Timeline = jsonTimeline(rep.Timeline)
	if out.Findings == nil {
		out.Findings = []string{}
	}
	return writeJSONLine(w, out)
}

// WriteBrokenPlannerJSON prints a broken-planner report as one JSON
// object on one line.
func WriteBrokenPlannerJSON(w io.Writer, rep *BrokenPlannerReport) error {
	out := *rep
	out.Timeline = jsonTimeline(rep.Timeline)
	if out.Findings == nil {
		out.Findings = []string{}
	}
	return writeJSONLine(w, out)
}

// jsonTimeline is a timeline whose events all have a dns list, empty if
// nothing was asked.
func jsonTimeline(events []Event) []Event {
	out := slices.Clone(events)
	for i := range out {
		if out[i].DNS == nil {
			out[i].DNS = []Answer{}
		}
	}
	return out
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteBrokenPlannerText prints a broken-planner report for people: the
// timeline (time since the first step, actor, action, the cluster's
// answer and its detail, then what the nodes' DNS answered: a summary of
// every endpoint, and the first broken endpoint's answers), the findings
// and the verdict.
func WriteBrokenPlannerText(w io.Writer, rep *BrokenPlannerReport) error {
	var b strings.Builder
	fmt.Fprintf(&b, "== %s against the %s design ==\n", rep.Scenario, strings.ToUpper(string(rep.Design)))
	if rep.Variant != "" {
		fmt.Fprintf(&b, "!! variant: %s\n", rep.Variant)
	}
	names := make([]string, len(rep.Broken))
	for i, n := range rep.Broken {
		names[i], _, _ = strings.Cut(n, ".")
	}
	fmt.Fprintf(&b, "three nodes on loopback; %d endpoints, two load balancers each. The planner's source breaks for %d\n", len(rep.Endpoints), len(rep.Broken))
	fmt.Fprintf(&b, "of them (%s). A plan cannot empty an endpoint (each\n", strings.Join(names, ", "))
	fmt.Fprintf(&b, "needs a target of weight > 0), so the planner plans each of those with one target at the address\n")
	fmt.Fprintf(&b, "the broken source gave, %s (TEST-NET-3), in place of its two load balancers. After each\n", rep.BadAddress)
	fmt.Fprintf(&b, "step every node's DNS is asked for every endpoint (A, and _dnsplan TXT for the generation); in\n")
	fmt.Fprintf(&b, "between, a watch asks them all over and over. Every answer is judged against the healthy records.\n\n")
	for i, ev := range rep.Timeline {
		fmt.Fprintf(&b, "%3d  %+7.3fs  %-10s  %s\n", i+1, ev.Offset.Seconds(), ev.Actor, ev.Action)
		fmt.Fprintf(&b, "%24s→ %s\n", "", ev.Result)
		for _, line := range ev.Detail {
			fmt.Fprintf(&b, "%26s%s\n", "", line)
		}
		for _, line := range rep.dnsSummary(ev.DNS) {
			fmt.Fprintf(&b, "%24sDNS %s\n", "", line)
		}
	}
	fmt.Fprintf(&b, "\nfindings:\n")
	for _, f := range rep.Findings {
		fmt.Fprintf(&b, "  - %s\n", f)
	}
	fmt.Fprintf(&b, "checker (package probe, %d rounds beside the script): %d I1 and %d I2 violations\n", rep.Checker.Rounds, rep.Checker.I1, rep.Checker.I2)
	for _, v := range rep.Checker.First {
		fmt.Fprintf(&b, "  - %s\n", v)
	}
	verdict := func(label string, v BrokenPlannerVerdict) {
		fmt.Fprintf(&b, "%-10s froze on doubt: %-3s  old records served throughout: %-3s  bad address served: %-3s  restored: %s\n",
			label, yesNo(v.FrozeOnDoubt), yesNo(v.OldRecordsServed), yesNo(v.BadAddressServed), yesNo(v.Restored))
	}
	b.WriteString("\n")
	verdict("verdict:", rep.BrokenPlannerVerdict)
	verdict("expected:", rep.Expected)
	if rep.AsExpected {
		fmt.Fprintf(&b, "=> AS EXPECTED: the cluster froze on the doubtful plan, every node kept serving the old records, and rollback and unfreeze restored service (took %s)\n",
			rep.Took.Round(1e6))
	} else {
		fmt.Fprintf(&b, "=> NOT AS EXPECTED for the %s design (took %s)\n", rep.Design, rep.Took.Round(1e6))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// dnsSummary sums one step's answers up: per node, how many endpoints
// answered what (their healthy records, the bad address, nothing, ...),
// one line for the nodes that answered alike; then the first broken
// endpoint's answers themselves.
func (rep *BrokenPlannerReport) dnsSummary(answers []Answer) []string {
	if len(answers) == 0 {
		return nil
	}
	var nodes []string
	perNode := map[string][]Answer{}
	for _, a := range answers {
		if _, ok := perNode[a.Node]; !ok {
			nodes = append(nodes, a.Node)
		}
		perNode[a.Node] = append(perNode[a.Node], a)
	}
	says := make([]string, len(nodes))
	for i, n := range nodes {
		var order []string
		count := map[string]int{}
		for _, a := range perNode[n] {
			k := rep.describe(a)
			if count[k] == 0 {
				order = append(order, k)
			}
			count[k]++
		}
		parts := make([]string, len(order))
		for j, k := range order {
			parts[j] = fmt.Sprintf("%d endpoints %s", count[k], k)
			if count[k] == len(perNode[n]) {
				parts[j] = fmt.Sprintf("all %d endpoints %s", count[k], k)
			}
		}
		says[i] = strings.Join(parts, "; ")
	}
	lines := groupByNode(nodes, says, "")
	if len(rep.Broken) > 0 {
		var first []Answer
		for _, a := range answers {
			if a.Endpoint == rep.Broken[0] {
				first = append(first, a)
			}
		}
		for _, l := range dnsLines(first) {
			lines = append(lines, rep.Broken[0]+" "+l)
		}
	}
	return lines
}

// describe classifies an answer for the summary.
func (rep *BrokenPlannerReport) describe(a Answer) string {
	switch {
	case a.Rcode != dns.RcodeToString[dns.RcodeSuccess]:
		return a.Rcode
	case a.Empty():
		return fmt.Sprintf("at generation %d, NO ADDRESSES", a.Generation)
	case slices.Contains(a.Addresses, rep.BadAddress):
		return fmt.Sprintf("at generation %d, THE BAD ADDRESS %s", a.Generation, strings.Join(a.Addresses, " "))
	case slices.Equal(a.Addresses, rep.Healthy[a.Endpoint]):
		return fmt.Sprintf("at generation %d, healthy records", a.Generation)
	}
	return fmt.Sprintf("at generation %d, OTHER RECORDS", a.Generation)
}
