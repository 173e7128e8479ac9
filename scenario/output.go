package scenario

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

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
	out.Timeline = slices.Clone(rep.Timeline)
	for i := range out.Timeline {
		if out.Timeline[i].DNS == nil {
			out.Timeline[i].DNS = []Answer{}
		}
	}
	if out.Findings == nil {
		out.Findings = []string{}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
