package chaos

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/probe"
)

// Invariants are the invariants the checker holds a run to (docs/DESIGN.md,
// section 3).
var Invariants = []string{"I1", "I2", "I3", "I4", "I5", "I7", "D1", "L2", "L3"}

// Report is what one run saw and what the checks found.
type Report struct {
	Design   contract.Design `json:"design"`
	Seed     uint64          `json:"seed"`
	Duration time.Duration   `json:"duration"`
	Insecure bool            `json:"insecure,omitempty"` // Config.Insecure
	// Observed is how long faults were injected and the system observed;
	// StoppedEarly says the run stopped shortly after a violation.
	Observed     time.Duration `json:"observed"`
	StoppedEarly bool          `json:"stopped_early"`
	Schedule     []Fault       `json:"schedule"`
	Injected     int           `json:"faults_injected"`

	Reads   int `json:"reads"`
	Applies int `json:"applies"`
	Unknown int `json:"applies_unknown_outcome"`
	// UnknownDropped is how many of those the check could leave out:
	// retries of one request, or attempts the audit history shows had no
	// effect.
	UnknownDropped int `json:"unknown_dropped"`
	PlansStored    int `json:"plans_stored"`
	AuditEvents    int `json:"audit_events"`
	AuditGaps      int `json:"audit_gaps"`
	FenceChecked   int `json:"applies_fencing_checked"`
	DNSQueries     int `json:"dns_queries"`
	// Linearizability is porcupine's verdict: Ok, Illegal, or Unknown
	// (it ran out of time: inconclusive, not a violation).
	Linearizability porcupine.CheckResult `json:"linearizability"`
	Violations      []Violation           `json:"violations"`
	Notes           []string              `json:"notes,omitempty"`
	Files           []string              `json:"files,omitempty"`

	ops    []Op
	events []Event
	audit  []AuditEvent
	final  finalState
	lin    linearizability
}

// Caught reports whether the run found any violation.
func (r *Report) Caught() bool { return len(r.Violations) > 0 }

// Count is how many violations of one invariant the run found.
func (r *Report) Count(invariant string) int {
	n := 0
	for _, v := range r.Violations {
		if v.Invariant == invariant {
			n++
		}
	}
	return n
}

// check runs every check on what the run recorded.
func (r *run) check(faults []Fault, ps probe.Summary, final finalState, afterHeal finalL2) *Report {
	ops, events, violations, acked := r.rec.snapshot()
	audit := r.audit.sorted()
	rep := &Report{
		Design: r.cfg.Design, Seed: r.cfg.Seed, Duration: r.cfg.Duration, Insecure: r.cfg.Insecure, Schedule: faults,
		PlansStored: len(acked), AuditEvents: len(audit), DNSQueries: ps.Queries,
		ops: ops, events: events, audit: audit, final: final,
	}
	r.audit.mu.Lock()
	rep.AuditGaps = r.audit.gaps
	r.audit.mu.Unlock()
	for _, e := range events {
		if _, ok := DefaultMix[FaultKind(e.Kind)]; ok {
			rep.Injected++
		}
	}
	for _, o := range ops {
		switch {
		case o.Kind == "read":
			rep.Reads++
		case !o.Known:
			rep.Unknown++
			rep.Applies++
		default:
			rep.Applies++
		}
	}

	// I1 (and I5 for applies): the whole history of reads and applies,
	// final reads included, must be linearizable as registers that only
	// grow.
	complete := rep.AuditGaps == 0 && final.Err == ""
	checked, dropped := reduceUnknown(ops, audit, complete)
	rep.UnknownDropped = dropped
	rep.lin = checkLinearizable(checked, checkTimeout)
	rep.Linearizability = rep.lin.Result
	if rep.lin.Result == porcupine.Unknown {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the linearizability check ran out of time (%s): inconclusive", checkTimeout))
	}
	violations = append(violations, rep.lin.Violations...)

	// L2 during the enactor faults, and after the last fault healed.
	violations = append(violations, checkL2(events, ops, acked, r.rec.refusals(), r.leaseTTL)...)
	violations = append(violations, afterHeal.violations...)
	if !afterHeal.judged {
		rep.Notes = append(rep.Notes, "the run ended before the L2 bound after its last fault: L2 at the end not judged")
	}

	// I2 per family and I7 on each endpoint's applied sequence; DNS
	// answers against the records of their generations.
	seq, unknown := r.replicas.served.judge(audit)
	violations = append(violations, seq...)
	if unknown > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d applies had no learned record or fell in an audit gap: I2 per family and I7 judged afresh after each", unknown))
	}
	answers, unjudged := r.dns.judgePending()
	violations = append(violations, answers...)
	if unjudged > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d DNS answers named a generation whose record was never learned: not held to it", unjudged))
	}

	// I4 on the audit history.
	fence, judged := checkFencing(audit)
	rep.FenceChecked = judged
	violations = append(violations, fence...)
	// D1 on the audit history: no plan held on doubt was applied.
	violations = append(violations, checkHeld(audit, r.heldGenerations())...)

	// I3 and I5 at the end.
	if final.Err != "" {
		rep.Notes = append(rep.Notes, "final state not read, I3/I5 at the end not checked: "+final.Err)
	} else {
		for _, ep := range slices.Sorted(maps.Keys(final.Applied)) {
			if g := final.Applied[ep]; !final.Plans[g] {
				violations = append(violations, Violation{Invariant: "I3", Source: "final", Endpoint: ep, At: r.rec.now(),
					Detail: fmt.Sprintf("at the end, generation %d is applied but its plan is deleted", g)})
			}
		}
		violations = append(violations, checkPlansKept(acked, final.Plans, audit)...)
	}
	if rep.AuditGaps > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the audit history had %d gap(s); fencing was not judged across them", rep.AuditGaps))
	}
	slices.SortStableFunc(violations, func(a, b Violation) int { return cmp.Compare(a.At, b.At) })
	rep.Violations = violations
	return rep
}

// Summary is the report in one line.
func (r *Report) Summary() string {
	verdict := "PASS"
	if r.Caught() {
		var found []string
		for _, inv := range Invariants {
			if n := r.Count(inv); n > 0 {
				found = append(found, fmt.Sprintf("%s×%d", inv, n))
			}
		}
		verdict = "VIOLATION " + strings.Join(found, " ")
	}
	return fmt.Sprintf("%s seed %d: %s — observed %.1fs, %d faults, %d reads, %d applies (%d outcome unknown), %d plans, %d audit events, linearizability %s",
		r.Design, r.Seed, verdict, r.Observed.Seconds(), r.Injected, r.Reads, r.Applies, r.Unknown, r.PlansStored, r.AuditEvents, r.Linearizability)
}

// Print writes the summary line and, on a violation, the seed, the first
// violation of each invariant, the history around the first violation, and
// the files written.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintln(w, r.Summary())
	for _, n := range r.Notes {
		fmt.Fprintln(w, "  note:", n)
	}
	if !r.Caught() {
		return
	}
	insecure := ""
	if r.Insecure {
		insecure = " --insecure"
	}
	fmt.Fprintf(w, "  seed %d, design %s: reproduce with: dnsplan chaos --design %s --seed %d --duration %s%s\n",
		r.Seed, r.Design, r.Design, r.Seed, r.Duration, insecure)
	fmt.Fprintln(w, "  first violation of each invariant:")
	for _, inv := range Invariants {
		for _, v := range r.Violations {
			if v.Invariant == inv {
				fmt.Fprintln(w, "    "+v.String())
				break
			}
		}
	}
	first := r.Violations[0]
	fmt.Fprintf(w, "  history around the first violation (%s):\n", first.Invariant)
	for _, line := range r.around(first) {
		fmt.Fprintln(w, "    "+line)
	}
	for _, f := range r.Files {
		fmt.Fprintln(w, "  wrote", f)
	}
}

// Context window of the minimal history.
const (
	beforeViolation = 1500 * time.Millisecond
	afterViolation  = 300 * time.Millisecond
	maxContextLines = 40
)

// around is the minimal history around a violation: on its endpoint (all
// endpoints if it names none), the faults, the writes (acknowledged,
// unknown, and as the audit history has them) and the reads at which the
// generation seen changed, in a window before and just after it; the
// lines nearest the violation if there are too many.
func (r *Report) around(v Violation) []string {
	from, to := v.At-int64(beforeViolation), v.At+int64(afterViolation)
	type line struct {
		at   int64
		text string
	}
	var lines []line
	for _, e := range r.events {
		if e.At >= from && e.At <= to && (v.Endpoint == "" || e.Endpoint == "" || e.Endpoint == v.Endpoint) {
			lines = append(lines, line{e.At, "event " + e.String()})
		}
	}
	lastRead := map[string]uint64{}
	// Retries of one request whose outcome is unknown show as one line.
	retries := map[string]int{}
	retryKey := func(o Op) string { return fmt.Sprintf("%s|%s|%d|%s|%d", o.Kind, o.Actor, o.Gen, o.Endpoint, o.Token) }
	for _, o := range r.ops {
		if !o.Known && o.Call >= from && o.Call <= to {
			retries[retryKey(o)]++
		}
	}
	shown := map[string]bool{}
	for _, o := range r.ops {
		if v.Endpoint != "" && o.Endpoint != v.Endpoint {
			continue
		}
		changed := o.Kind == "read" && o.Out != lastRead[o.Endpoint]
		if o.Kind == "read" {
			lastRead[o.Endpoint] = o.Out
		}
		end := o.Return
		if end == Unknown {
			end = o.Call
		}
		if end < from || o.Call > to {
			continue
		}
		near := o.Call <= v.At+int64(100*time.Millisecond) && end >= v.At-int64(100*time.Millisecond)
		switch {
		case !o.Known:
			if k := retryKey(o); !shown[k] {
				shown[k] = true
				text := "op    " + o.String()
				if n := retries[k]; n > 1 {
					text += fmt.Sprintf(" (sent %d times)", n)
				}
				lines = append(lines, line{o.Call, text})
			}
		case o.Kind != "read" || changed || near:
			lines = append(lines, line{o.Call, "op    " + o.String()})
		}
	}
	for _, e := range r.audit {
		if e.At >= from && e.At <= to && (v.Endpoint == "" || e.Endpoint == "" || e.Endpoint == v.Endpoint) &&
			e.Kind != kindSubmit && e.Kind != kindAcquire {
			lines = append(lines, line{e.At, fmt.Sprintf("audit %s %s", fmtNanos(e.At), e)})
		}
	}
	if len(lines) > maxContextLines {
		sort.SliceStable(lines, func(i, j int) bool { return abs(lines[i].at-v.At) < abs(lines[j].at-v.At) })
		lines = lines[:maxContextLines]
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].at < lines[j].at })
	out := make([]string, 0, len(lines)+1)
	marked := false
	for _, l := range lines {
		if !marked && l.at > v.At {
			out = append(out, fmt.Sprintf(">>> %s %s violated here: %s", fmtNanos(v.At), v.Invariant, v.Detail))
			marked = true
		}
		out = append(out, l.text)
	}
	if !marked {
		out = append(out, fmt.Sprintf(">>> %s %s violated here: %s", fmtNanos(v.At), v.Invariant, v.Detail))
	}
	return out
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// historyFile is the JSON file a run with a violation writes.
type historyFile struct {
	Report *Report      `json:"report"`
	Final  finalState   `json:"final"`
	Events []Event      `json:"events"`
	Ops    []Op         `json:"ops"`
	Audit  []AuditEvent `json:"audit"`
}

// writeFiles writes the whole history as JSON and porcupine's HTML view
// of the reads and applies into dir.
func (r *Report) writeFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	base := filepath.Join(dir, fmt.Sprintf("chaos-%s-seed%d", r.Design, r.Seed))
	jsonPath, htmlPath := base+".json", base+".html"
	r.Files = []string{jsonPath, htmlPath}
	data, err := json.MarshalIndent(historyFile{Report: r, Final: r.final, Events: r.events, Ops: r.ops, Audit: r.audit}, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(jsonPath, data, 0o640); err != nil {
		return err
	}
	return r.lin.visualize(htmlPath, faultEvents(r.events))
}

// Tally adds runs up into the table make chaos prints.
type Tally struct {
	runs map[contract.Design]*tallyRow
}

type tallyRow struct {
	runs, caught, errors, inconclusive int
	invariants                         map[string]int
	firstAt                            []time.Duration
}

// Add counts one run: its report, or the error that stopped it.
func (t *Tally) Add(d contract.Design, rep *Report, err error) {
	if t.runs == nil {
		t.runs = map[contract.Design]*tallyRow{}
	}
	row := t.runs[d]
	if row == nil {
		row = &tallyRow{invariants: map[string]int{}}
		t.runs[d] = row
	}
	row.runs++
	if err != nil || rep == nil {
		row.errors++
		return
	}
	if rep.Linearizability == porcupine.Unknown {
		row.inconclusive++
	}
	if rep.Caught() {
		row.caught++
		row.firstAt = append(row.firstAt, time.Duration(rep.Violations[0].At))
		for _, inv := range Invariants {
			if rep.Count(inv) > 0 {
				row.invariants[inv]++
			}
		}
	}
}

// Caught is how many runs of a design found a violation, of how many.
func (t *Tally) Caught(d contract.Design) (caught, runs int) {
	if row := t.runs[d]; row != nil {
		return row.caught, row.runs
	}
	return 0, 0
}

// Errors is how many runs of a design failed to run.
func (t *Tally) Errors(d contract.Design) int {
	if row := t.runs[d]; row != nil {
		return row.errors
	}
	return 0
}

// Print writes the table: per design, seeds run, seeds with a violation,
// seeds violating each invariant, and the median time to the first
// violation.
func (t *Tally) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "design\tseeds\tcaught\t%s\tmedian first\tinconclusive\terrors\t\n", strings.Join(Invariants, "\t"))
	for _, d := range []contract.Design{contract.Fixed, contract.Legacy} {
		row := t.runs[d]
		if row == nil {
			continue
		}
		var cols []string
		for _, inv := range Invariants {
			cols = append(cols, fmt.Sprint(row.invariants[inv]))
		}
		median := "-"
		if len(row.firstAt) > 0 {
			slices.Sort(row.firstAt)
			median = fmt.Sprintf("%.1fs", row.firstAt[len(row.firstAt)/2].Seconds())
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d\t%d\t\n", d, row.runs, row.caught, strings.Join(cols, "\t"), median, row.inconclusive, row.errors)
	}
	tw.Flush()
}
