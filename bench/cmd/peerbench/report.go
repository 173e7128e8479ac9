package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// report gathers one run's figures and prints them, each beside its
// peers' from the same run.
type report struct {
	cfg                config
	started, ended     time.Time
	loadStart, loadEnd string
	machine            string
	versions           []string
	systems            []string // apply and failover systems, dnsplan first
	apply              map[string]map[int]loadResult
	failover           map[string]failover
	propagation        []time.Duration
	dns                []dnsResult
}

func newReport(cfg config) *report {
	r := &report{cfg: cfg, started: time.Now().UTC(), loadStart: loadavg(),
		apply: map[string]map[int]loadResult{}, failover: map[string]failover{}}
	r.machine = machine()
	r.versions = append(r.versions, "dnsplan: "+gitDescribe(), "Go: "+runtime.Version())
	return r
}

func (r *report) finish() {
	r.ended, r.loadEnd = time.Now().UTC(), loadavg()
	for _, argv := range [][]string{{"knotd", "--version"}, {"nsd", "-v"}, {"named", "-v"}} {
		r.versions = append(r.versions, argv[0]+": "+versionOf(argv...))
	}
	r.versions = append(r.versions, "dnsperf: "+dnsperfVersion())
}

func (r *report) addSystem(name string) {
	for _, s := range r.systems {
		if s == name {
			return
		}
	}
	r.systems = append(r.systems, name)
}

func (r *report) addApply(name string, lr loadResult) {
	r.addSystem(name)
	if r.apply[name] == nil {
		r.apply[name] = map[int]loadResult{}
	}
	r.apply[name][lr.Clients] = lr
}

func (r *report) addFailover(name string, f failover) {
	r.addSystem(name)
	r.failover[name] = f
}

// row is one line of the figures table: dnsplan's value beside one peer's.
type row struct {
	figure, ours, peer, theirs, ratio string
}

// ratio formats a/b, where above 1 means dnsplan is ahead.
func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "–"
	}
	r := a / b
	word := "ahead"
	if r < 1 {
		word = "behind"
	}
	return fmt.Sprintf("%.2f× (%s)", r, word)
}

func (r *report) rows() []row {
	var rows []row
	peers := r.systems
	if len(peers) > 0 && peers[0] == "dnsplan" {
		peers = peers[1:]
	}
	for _, n := range r.cfg.clients {
		ours, ok := r.apply["dnsplan"][n]
		if !ok {
			continue
		}
		for _, p := range peers {
			theirs, ok := r.apply[p][n]
			if !ok {
				continue
			}
			rows = append(rows, row{fmt.Sprintf("fenced conditional apply, 3 nodes, %d %s", n, map[bool]string{true: "client", false: "clients"}[n == 1]),
				applyCell(ours), p, applyCell(theirs), ratio(ours.OpsPerSec(), theirs.OpsPerSec())})
		}
	}
	if ours, ok := r.failover["dnsplan"]; ok {
		for _, p := range peers {
			if theirs, ok := r.failover[p]; ok {
				rows = append(rows, row{fmt.Sprintf("failover: SIGKILL the leader → first acknowledged write (%d trials)", len(ours.Trials)),
					failCell(ours), p, failCell(theirs), ratio(float64(theirs.Median()), float64(ours.Median()))})
			}
		}
	}
	var ours *dnsResult
	for i, d := range r.dns {
		if d.Server == "dnsplan" && d.Err == nil {
			ours = &r.dns[i]
		}
	}
	for _, d := range r.dns {
		if d.Server == "dnsplan" || ours == nil {
			continue
		}
		theirs, rt := "failed: "+errText(d.Err), "–"
		if d.Err == nil {
			theirs, rt = qps(d.QPS), ratio(ours.QPS, d.QPS)
		}
		rows = append(rows, row{fmt.Sprintf("DNS, server on 1 core, dnsperf on the other, %s names × 4 A", thousands(dnsNames)), qps(ours.QPS), d.Server, theirs, rt})
	}
	if len(r.propagation) > 0 {
		rows = append(rows, row{fmt.Sprintf("propagation: plan acknowledged → every node's DNS serves it (%d trials)", len(r.propagation)),
			fmt.Sprintf("p50 %s, p99 %s", ms(percentile(r.propagation, 0.5)), ms(percentile(r.propagation, 0.99))),
			"Route 53 (its promise)", "60 s", "–"})
	}
	return rows
}

func applyCell(l loadResult) string {
	s := fmt.Sprintf("%s ops/s, p50 %s, p99 %s", thousands(l.OpsPerSec()), ms(l.P50), ms(l.P99))
	if l.Failed > 0 {
		s += fmt.Sprintf(", %d failed (first: %s)", l.Failed, l.FirstErr)
	}
	return s
}

func failCell(f failover) string {
	return fmt.Sprintf("median %s, worst %s", ms(f.Median()), ms(f.Worst()))
}

func qps(v float64) string { return thousands(v) + " qps" }

func errText(err error) string {
	s := fmt.Sprint(err)
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// thousands formats v rounded, with commas.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// text is the run's summary for the terminal.
func (r *report) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s, %s → %s, load average %s at start, %s at end\n", r.machine,
		r.started.Format("2006-01-02 15:04"), r.ended.Format("15:04 UTC"), r.loadStart, r.loadEnd)
	for _, row := range r.rows() {
		fmt.Fprintf(&b, "%s\n    dnsplan: %s\n    %s: %s\n    ratio: %s\n", row.figure, row.ours, row.peer, row.theirs, row.ratio)
	}
	for _, d := range r.dns {
		if d.Err == nil {
			fmt.Fprintf(&b, "dnsperf %s: lost %s; %s\n", d.Server, d.Lost, d.Codes)
		}
	}
	return b.String()
}

// markdown is the table and the run's particulars for BENCHMARKS.md.
func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s, %s to %s UTC (`make %s`), on %s. ", r.started.Format("2006-01-02"),
		r.started.Format("15:04"), r.ended.Format("15:04"), map[bool]string{true: "bench-quick", false: "bench"}[r.cfg.quick], r.machine)
	fmt.Fprintf(&b, "Load average (1, 5, 15 min) %s at the start and %s at the end", r.loadStart, r.loadEnd)
	if busy(r.loadStart, 0.5) || busy(r.loadEnd, 1.5) {
		b.WriteString(": the machine was not idle (other work shared its cores), so every figure is noisy and lower than on an idle machine; the ratios are the figures to read")
	}
	b.WriteString(".\n\n")
	b.WriteString("| figure | dnsplan | peer | peer's figure | ratio |\n|---|---|---|---|---|\n")
	for _, row := range r.rows() {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", row.figure, row.ours, row.peer, row.theirs, row.ratio)
	}
	b.WriteString("\nRatios above 1 mean dnsplan is ahead: ops/s and qps divided by the peer's, the peer's failover median divided by dnsplan's.\n\n")
	var behind []string
	for _, row := range r.rows() {
		if strings.Contains(row.ratio, "behind") {
			behind = append(behind, fmt.Sprintf("%s: %s against %s", row.figure, strings.TrimSuffix(row.ratio, " (behind)"), row.peer))
		}
	}
	if len(behind) > 0 {
		b.WriteString("Where dnsplan is behind in this run:\n\n")
		for _, s := range behind {
			fmt.Fprintf(&b, "- %s\n", s)
		}
		b.WriteString("\n")
	}
	if len(r.dns) > 0 {
		b.WriteString("dnsperf's own counts (queries still outstanding when it stops count as lost):\n\n")
	}
	for _, d := range r.dns {
		if d.Err == nil {
			fmt.Fprintf(&b, "- %s: queries lost %s; response codes %s\n", d.Server, d.Lost, d.Codes)
		}
	}
	b.WriteString("\nVersions:\n\n")
	for _, v := range r.versions {
		fmt.Fprintf(&b, "- %s\n", v)
	}
	return fillTemplate(b.String())
}

// busy reports whether a load average line's 1-minute figure is above
// share times the cores. Before the run any load is other work's; at its
// end the benchmark's own servers and dnsperf account for about one per
// core.
func busy(load string, share float64) bool {
	var one float64
	if _, err := fmt.Sscan(load, &one); err != nil {
		return false
	}
	return one > share*float64(runtime.NumCPU())
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %d GiB", (kb+(1<<19))>>20)
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("%d cores (%s)%s, Linux %s", runtime.NumCPU(), model, mem, strings.TrimSpace(string(kernel)))
}

func gitDescribe() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown commit"
	}
	return "commit " + strings.TrimSpace(string(out))
}

func dnsperfVersion() string {
	out, _ := exec.Command("dpkg-query", "-W", "-f", "${Version}", "dnsperf").Output()
	if len(out) == 0 {
		return "not installed"
	}
	return "dnsperf " + string(out) + " (Debian)"
}
