package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// defaultCluster is the local three-node cluster of `dnsplan dev` and the
// docker compose file.
var defaultCluster = []string{"127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"}

var (
	// errCtlUsage marks a mistake in the command line itself.
	errCtlUsage = errors.New("ctl usage")
	// errUnhealthy is health's verdict; main turns it into exit status 1.
	errUnhealthy = errors.New("unhealthy")
	// errNoAnswer is status's verdict when no node answered at all.
	errNoAnswer = errors.New("no node answered")
)

// ctl is one invocation of `dnsplan ctl`: where the cluster is, how to
// print, and the client, made on first use.
type ctl struct {
	cluster []string
	format  string // "text" or "json"
	timeout time.Duration
	tls     tlsFlags
	stdout  io.Writer
	stderr  io.Writer
	now     func() time.Time

	c *client.Client
}

// ctlCommand is one ctl subcommand. setup defines the subcommand's flags
// on fs and returns what runs once they are parsed; run gets the
// positional arguments.
type ctlCommand struct {
	name, synopsis, summary string
	setup                   func(fs *flag.FlagSet) func(ctx context.Context, x *ctl, args []string) error
}

func ctlCommands() []ctlCommand {
	return []ctlCommand{
		{"status", "status", "every node's own view, and the leader", setupStatus},
		{"health", "health", "exit non-zero unless every node answers and knows a leader", setupHealth},
		{"members", "members", "the cluster's members", setupMembers},
		{"plans", "plans [--stale]", "stored plans", setupPlans},
		{"plan", "plan [--stale] GEN", "one plan, endpoint by endpoint", setupPlan},
		{"submit", "submit -f FILE|- [--force] [--dry-run] [--expect-parent GEN] [--expect-digest DIGEST] [--delta [--remove NAMES]]", "submit a plan (protojson of dnsplan.v1.Plan), or with --delta only the endpoints it adds or replaces; prints its generation and digest; --dry-run shows what it would change and stores nothing", setupSubmit},
		{"rollback", "rollback [--to GEN] [--reason TEXT] [--force]", "store a plan of the records the endpoints served before (or at GEN); the enactors apply it like any plan", setupRollback},
		{"diff", "diff [--stale] GEN_A GEN_B", "what plan GEN_B changes against GEN_A, and the rules it would meet if applied now", setupDiff},
		{"applied", "applied [--stale] [ENDPOINT]", "what endpoints serve", setupApplied},
		{"leases", "leases [--stale]", "leases, with their holders and tokens", setupLeases},
		{"cleanup", "cleanup --keep N", "delete old plans no endpoint serves, keeping the newest N", setupCleanup},
		{"history", "history [--endpoint NAME] [--since TIME] [--limit N] [--stale]", "the audit history, oldest first; --endpoint: one endpoint's timeline; -o jsonl exports one event a line", setupHistory},
		{"config", "config get [--stale] | config set KEY VALUE", "the cluster's policy; keys max-capacity-drop (0..1), velocity-window (a duration), max-plan-change (0..1] and max-velocity-refusals (0: never)", setupConfig},
		{"freeze", "freeze [--reason R]", "refuse every apply until unfreeze", setupFreeze(true)},
		{"unfreeze", "unfreeze", "allow applies again", setupFreeze(false)},
		{"transfer-leader", "transfer-leader [--to ID]", "hand leadership to another voter", setupTransfer},
		{"add-voter", "add-voter --id ID --raft-addr A --grpc-addr G", "add a node as a voter", setupAddVoter},
		{"remove-server", "remove-server ID", "remove a node from the cluster", setupRemoveServer},
	}
}

// ctlGlobals are the flags of ctl itself. They may come before the
// subcommand or after it.
type ctlGlobals struct {
	cluster   *listFlag
	o, output string
	timeout   time.Duration
	tls       *tlsFlags
}

func bindCtlGlobals(fs *flag.FlagSet) *ctlGlobals {
	g := &ctlGlobals{cluster: newListFlag(defaultCluster...)}
	fs.Var(g.cluster, "cluster", "comma-separated gRPC addresses of the cluster's nodes")
	fs.StringVar(&g.o, "o", "", "output format: text, json, or jsonl (one JSON object a line; history: one a event)")
	fs.StringVar(&g.output, "output", "text", "output format: text, json or jsonl (same as -o)")
	fs.DurationVar(&g.timeout, "timeout", 10*time.Second, "give up on the command after this long")
	g.tls = addTLSFlags(fs)
	return g
}

// apply copies g into x. given holds the flags set on the command line.
// After a subcommand (onlyGiven) only those count: the ctl flags before it
// already took their environment variables.
func (x *ctl) apply(g *ctlGlobals, given map[string]bool, onlyGiven bool) error {
	if !onlyGiven || given["cluster"] {
		x.cluster = g.cluster.values
	}
	if !onlyGiven || given["timeout"] {
		x.timeout = g.timeout
	}
	for name, set := range map[string]func(){
		"tls-ca":   func() { x.tls.m.CA = g.tls.m.CA },
		"tls-cert": func() { x.tls.m.Cert = g.tls.m.Cert },
		"tls-key":  func() { x.tls.m.Key = g.tls.m.Key },
		"insecure": func() { x.tls.insecure = g.tls.insecure },
	} {
		if !onlyGiven || given[name] {
			set()
		}
	}
	switch {
	case given["o"]:
		x.format = g.o
	case given["output"]:
		x.format = g.output
	case onlyGiven:
	case g.o != "": // from DNSPLAN_O
		x.format = g.o
	default:
		x.format = g.output
	}
	if x.format != "text" && x.format != "json" && x.format != "jsonl" {
		return fmt.Errorf("%w: output format %q: want text, json or jsonl", errCtlUsage, x.format)
	}
	if len(x.cluster) == 0 {
		return fmt.Errorf("%w: --cluster is empty", errCtlUsage)
	}
	if x.timeout <= 0 {
		return fmt.Errorf("%w: --timeout must be positive", errCtlUsage)
	}
	return nil
}

func runCtl(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x := &ctl{stdout: stdout, stderr: stderr, now: time.Now}
	fs := newFlagSet("ctl", stderr)
	fs.Usage = func() { ctlUsage(stderr, fs) }
	g := bindCtlGlobals(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := x.apply(g, givenOnCommandLine(args, func(fs *flag.FlagSet) { bindCtlGlobals(fs) }), false); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		ctlUsage(stderr, fs)
		return fmt.Errorf("%w: missing subcommand", errCtlUsage)
	}
	name := fs.Arg(0)
	var cmd *ctlCommand
	for _, c := range ctlCommands() {
		if c.name == name {
			cmd = &c
			break
		}
	}
	if cmd == nil {
		ctlUsage(stderr, fs)
		return fmt.Errorf("%w: unknown subcommand %q", errCtlUsage, name)
	}

	sub := newFlagSet("ctl "+name, stderr)
	sg := bindCtlGlobals(sub)
	run := cmd.setup(sub)
	sub.Usage = func() {
		fmt.Fprintf(stderr, "usage: dnsplan ctl [flags] %s\n\n%s.\n\nflags:\n", cmd.synopsis, cmd.summary)
		sub.PrintDefaults()
	}
	subArgs := flagsFirst(sub, fs.Args()[1:])
	if err := parseFlags(sub, subArgs); err != nil {
		return err
	}
	given := givenOnCommandLine(subArgs, func(fs *flag.FlagSet) {
		bindCtlGlobals(fs)
		cmd.setup(fs)
	})
	if err := x.apply(sg, given, true); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	defer x.close()
	return ctlError(run(ctx, x, sub.Args()))
}

// flagsFirst moves a subcommand's flags before its arguments, so that
// "ctl plan 3 -o json" reads as "ctl plan -o json 3" (Go's flag package
// stops at the first argument). A flag that is not a boolean takes the
// next word as its value; after "--" every word is an argument.
func flagsFirst(fs *flag.FlagSet, args []string) []string {
	var flags, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			rest = append(rest, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // the parse reports it
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if len(rest) == 0 {
		return flags
	}
	return append(append(flags, "--"), rest...)
}

// givenOnCommandLine returns the names of the flags args sets, parsed
// against the flags define defines. FlagSet.Visit cannot tell this after
// parseFlags, which also counts the flags it took from the environment.
func givenOnCommandLine(args []string, define func(*flag.FlagSet)) map[string]bool {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	define(fs)
	_ = fs.Parse(args) // the real parse reports errors
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	return given
}

func ctlUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "usage: dnsplan ctl [flags] <subcommand> [subcommand flags] [args]\n\nsubcommands:")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, c := range ctlCommands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.synopsis, c.summary)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nflags (before or after the subcommand):")
	fs.PrintDefaults()
}

// rpcError is how ctl reports a gRPC error: "<code>: <message>".
type rpcError struct {
	st  *status.Status
	err error
}

func (e *rpcError) Error() string { return e.st.Code().String() + ": " + e.st.Message() }
func (e *rpcError) Unwrap() error { return e.err }

// ctlError turns gRPC and context errors into "<code>: <message>" and
// leaves the others (usage, files) as they are.
func ctlError(err error) error {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok {
		return &rpcError{st: st, err: err}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		st := status.FromContextError(err)
		return &rpcError{st: status.New(st.Code(), err.Error()), err: err}
	}
	return err
}

// describeErr is ctlError for an error shown in a table cell.
func describeErr(err error) string { return ctlError(err).Error() }

func (x *ctl) client() (*client.Client, error) {
	if x.c != nil {
		return x.c, nil
	}
	log := slog.New(slog.NewTextHandler(x.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	x.tls.discover(defaultCertDir)
	tlsOpts, _, err := x.tls.clientOptions()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errCtlUsage, err)
	}
	c, err := client.New(x.cluster, append(tlsOpts,
		client.WithCallTimeout(min(client.DefaultCallTimeout, x.timeout)),
		client.WithRetryBudget(x.timeout),
		client.WithLogger(log))...)
	if err != nil {
		return nil, err
	}
	x.c = c
	return c, nil
}

func (x *ctl) close() {
	if x.c != nil {
		x.c.Close()
	}
}

// show prints m as protojson with -o json, else as the table text writes.
func (x *ctl) show(m proto.Message, text func(w io.Writer)) error {
	switch x.format {
	case "json":
		return writeJSON(x.stdout, m)
	case "jsonl":
		return writeJSONLine(x.stdout, m)
	}
	return writeTable(x.stdout, text)
}

// writeJSONLine prints m as protojson on one line.
func writeJSONLine(w io.Writer, m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err = w.Write(buf.Bytes())
	return err
}

// writeJSON prints m as one indented protojson document. protojson's own
// whitespace is deliberately unstable, so it is re-indented here to keep
// the output byte-for-byte stable for scripts and tests.
func writeJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err = w.Write(buf.Bytes())
	return err
}

// writeTable aligns what text writes into columns. Rows of an endpoint's
// second and later targets end in empty cells, which tabwriter pads; the
// padding is trimmed so lines carry no trailing blanks.
func writeTable(w io.Writer, text func(w io.Writer)) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 8, 2, ' ', 0)
	text(tw)
	if err := tw.Flush(); err != nil {
		return err
	}
	var out bytes.Buffer
	for line := range bytes.Lines(buf.Bytes()) {
		out.Write(bytes.TrimRight(line, " \n"))
		out.WriteByte('\n')
	}
	_, err := w.Write(out.Bytes())
	return err
}

// tableRow writes one tab-separated table row.
func tableRow(w io.Writer, cells ...any) {
	for i, c := range cells {
		if i > 0 {
			io.WriteString(w, "\t")
		}
		fmt.Fprint(w, c)
	}
	io.WriteString(w, "\n")
}

// noArgs rejects positional arguments for subcommands that take none.
func noArgs(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errCtlUsage, args[0])
	}
	return nil
}

// Cell formats: "-" stands for "none" so columns never look shifted.

func timeCell(t *timestamppb.Timestamp) string {
	if t == nil || (t.GetSeconds() == 0 && t.GetNanos() == 0) {
		return "-"
	}
	return t.AsTime().UTC().Format(time.RFC3339)
}

func dashIfZero[T comparable](v T) any {
	var zero T
	if v == zero {
		return "-"
	}
	return v
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// --- status and health ---

// nodeStatus is one node's answer to Status, or why there is none.
type nodeStatus struct {
	addr string
	st   *pb.StatusResponse
	err  error
}

// statusAll asks every node for its own status, all at once, so one dead
// node costs one timeout, not one per node.
func statusAll(ctx context.Context, c *client.Client, addrs []string) []nodeStatus {
	out := make([]nodeStatus, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Go(func() {
			st, err := c.StatusOf(ctx, addr)
			out[i] = nodeStatus{addr: addr, st: st, err: err}
		})
	}
	wg.Wait()
	return out
}

// inTouch says whether a node's answer shows it in touch with the
// cluster, and how: on Raft it knows a leader; on the etcd store, where
// there is none, it is Ready (it reaches an etcd quorum and its replica
// has caught up).
func inTouch(s *pb.StatusResponse) (bool, string) {
	if s.GetStore() == string(cluster.StoreEtcd) {
		return s.GetState() == cluster.EtcdReady, "etcd store, " + s.GetState()
	}
	if s.GetLeaderId() == "" {
		return false, "no leader known"
	}
	return true, "leader " + s.GetLeaderId()
}

// freshest is the best guess at the cluster's current view: among the
// answers in touch with the cluster (inTouch), the highest term; within
// it, the leader's own answer, else the most applied. nil if none is.
func freshest(nodes []nodeStatus) *pb.StatusResponse {
	var best *pb.StatusResponse
	rank := func(s *pb.StatusResponse) []uint64 {
		self := uint64(0)
		if s.GetNodeId() == s.GetLeaderId() {
			self = 1
		}
		return []uint64{s.GetTerm(), self, s.GetAppliedIndex()}
	}
	for _, n := range nodes {
		if ok, _ := inTouch(n.st); n.st == nil || !ok {
			continue
		}
		if best == nil || slices.Compare(rank(n.st), rank(best)) > 0 {
			best = n.st
		}
	}
	return best
}

func setupStatus(*flag.FlagSet) func(context.Context, *ctl, []string) error {
	return func(ctx context.Context, x *ctl, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		c, err := x.client()
		if err != nil {
			return err
		}
		nodes := statusAll(ctx, c, x.cluster)
		if err := x.showStatuses(nodes, renderStatus); err != nil {
			return err
		}
		for _, n := range nodes {
			if n.err == nil {
				return nil
			}
		}
		return errNoAnswer
	}
}

func setupHealth(*flag.FlagSet) func(context.Context, *ctl, []string) error {
	return func(ctx context.Context, x *ctl, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		c, err := x.client()
		if err != nil {
			return err
		}
		nodes := statusAll(ctx, c, x.cluster)
		if err := x.showStatuses(nodes, renderHealth); err != nil {
			return err
		}
		return healthError(nodes)
	}
}

// healthError is nil when every node answered and is in touch with the
// cluster (inTouch).
func healthError(nodes []nodeStatus) error {
	var bad []string
	for _, n := range nodes {
		if n.err != nil {
			bad = append(bad, n.addr+": "+describeErr(n.err))
		} else if ok, how := inTouch(n.st); !ok {
			bad = append(bad, n.addr+": "+how)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", errUnhealthy, strings.Join(bad, "; "))
	}
	return nil
}

// statusJSON is one element of `ctl -o json status`: a node's status in
// protojson, or the error that stood in for it.
type statusJSON struct {
	Address string          `json:"address"`
	Status  json.RawMessage `json:"status,omitempty"`
	Error   string          `json:"error,omitempty"`
}

func (x *ctl) showStatuses(nodes []nodeStatus, text func(io.Writer, []nodeStatus)) error {
	if x.format == "text" {
		return writeTable(x.stdout, func(w io.Writer) { text(w, nodes) })
	}
	out := make([]statusJSON, len(nodes))
	for i, n := range nodes {
		out[i].Address = n.addr
		if n.err != nil {
			out[i].Error = describeErr(n.err)
			continue
		}
		b, err := protojson.Marshal(n.st)
		if err != nil {
			return err
		}
		out[i].Status = b
	}
	enc := json.NewEncoder(x.stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func renderStatus(w io.Writer, nodes []nodeStatus) {
	tableRow(w, "ADDRESS", "NODE", "STATE", "LEADER", "TERM", "COMMIT", "APPLIED", "SNAPSHOT", "DNS")
	var unreachable []nodeStatus
	for _, n := range nodes {
		if n.err != nil {
			unreachable = append(unreachable, n)
			tableRow(w, n.addr, "-", "unreachable", "-", "-", "-", "-", "-", "-")
			continue
		}
		s := n.st
		tableRow(w, n.addr, s.GetNodeId(), s.GetState(), dashIfZero(s.GetLeaderId()), s.GetTerm(),
			s.GetCommitIndex(), s.GetAppliedIndex(), s.GetLastSnapshotIndex(), dnsState(s))
	}
	// Errors go below the table: they are too long for a column.
	if len(unreachable) > 0 {
		fmt.Fprintln(w)
	}
	for _, n := range unreachable {
		fmt.Fprintf(w, "%s unreachable: %s\n", n.addr, describeErr(n.err))
	}
	best := freshest(nodes)
	switch {
	case best == nil:
		fmt.Fprintln(w, "\nleader: none known (no node in touch with the cluster)")
		return
	case best.GetStore() == string(cluster.StoreEtcd):
		fmt.Fprintf(w, "\nstore: etcd (no dnsplan leader: every node proposes), log at revision %d\n", best.GetCommitIndex())
	default:
		fmt.Fprintf(w, "\nleader: %s (%s), term %d\n", best.GetLeaderId(), dashIfZero(best.GetLeaderGrpcAddr()), best.GetTerm())
	}
	frozen := "no"
	if best.GetFrozen() {
		frozen = "yes"
		if r := best.GetFreezeReason(); r != "" {
			frozen += " (" + r + ")"
		}
	}
	fmt.Fprintf(w, "frozen: %s\nplans: %d, next generation %d; endpoints applied: %d\n",
		frozen, best.GetPlans(), best.GetNextGeneration(), best.GetEndpoints())
	// During a rolling upgrade: what the cluster runs, and who holds a
	// newer version back (it takes effect once every member runs it).
	fmt.Fprintf(w, "log version: %d active", best.GetLogVersion())
	var runs []string
	mixed := false
	for _, n := range nodes {
		if n.err == nil {
			runs = append(runs, fmt.Sprintf("%s runs %d", n.st.GetNodeId(), n.st.GetNodeLogVersion()))
			mixed = mixed || n.st.GetNodeLogVersion() != best.GetLogVersion()
		}
	}
	if mixed {
		fmt.Fprintf(w, " (%s; a newer version takes effect once every member runs it)", strings.Join(runs, ", "))
	}
	fmt.Fprintln(w)
}

// dnsState says whether a node's DNS answers: "serving@INDEX", or
// "servfail<FLOOR" while its replica has not reached its floor.
func dnsState(s *pb.StatusResponse) string {
	if s.GetDnsReady() {
		return fmt.Sprintf("serving@%d", s.GetDnsServedIndex())
	}
	return fmt.Sprintf("servfail<%d", s.GetDnsFloor())
}

func renderHealth(w io.Writer, nodes []nodeStatus) {
	for _, n := range nodes {
		switch {
		case n.err != nil:
			tableRow(w, "unhealthy", n.addr, describeErr(n.err))
		default:
			word := "ok"
			ok, how := inTouch(n.st)
			if !ok {
				word = "unhealthy"
			}
			tableRow(w, word, n.addr, n.st.GetNodeId()+": "+how)
		}
	}
}

// --- members ---

func setupMembers(*flag.FlagSet) func(context.Context, *ctl, []string) error {
	return func(ctx context.Context, x *ctl, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		c, err := x.client()
		if err != nil {
			return err
		}
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		return x.show(&pb.StatusResponse{Members: st.GetMembers()}, func(w io.Writer) { renderMembers(w, st.GetMembers()) })
	}
}

func renderMembers(w io.Writer, members []*pb.Member) {
	tableRow(w, "ID", "RAFT", "GRPC", "VOTER", "LEADER")
	for _, m := range members {
		tableRow(w, m.GetId(), dashIfZero(m.GetRaftAddr()), dashIfZero(m.GetGrpcAddr()), yesNo(m.GetVoter()), yesNo(m.GetLeader()))
	}
}

// --- plans ---

func setupPlans(fs *flag.FlagSet) func(context.Context, *ctl, []string) error {
	stale := fs.Bool("stale", false, "read the answering node's replica, which may lag")
	return func(ctx context.Context, x *ctl, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		c, err := x.client()
		if err != nil {
			return err
		}
		plans, err := c.AllPlans(ctx, *stale)
		if err != nil {
			return err
		}
		return x.show(&pb.ListPlansResponse{Plans: plans}, func(w io.Writer) { renderPlans(w, plans) })
	}
}

func renderPlans(w io.Writer, plans []*pb.Plan) {
	tableRow(w, "GEN", "PLANNER", "CREATED", "ENDPOINTS", "TARGETS")
	for _, p := range plans {
		targets := 0
		for _, e := range p.GetEndpoints() {
			targets += len(e.GetTargets())
		}
		tableRow(w, p.GetGeneration(), dashIfZero(p.GetPlannerId()), timeCell(p.GetCreatedAt()), len(p.GetEndpoints()), targets)
	}
}

func setupPlan(fs *flag.FlagSet) func(context.Context, *ctl, []string) error {
	stale := fs.Bool("stale", false, "read the answering node's replica, which may lag")
	return func(ctx context.Context, x *ctl, args []string) error {
		gen, err := parseGeneration(args)
		if err != nil {
			return err
		}
		c, err := x.client()
		if err != nil {
			return err
		}
		p, err := c.GetPlan(ctx, &pb.GetPlanRequest{Generation: gen, Stale: *stale})
		if err != nil {
			return err
		}
		return x.show(p, func(w io.Writer) { renderPlan(w, p) })
	}
}

func parseGeneration(args []string) (uint64, error) {
	if len(args) != 1 {
		return 0, fmt.Errorf("%w: want one argument, the plan's generation", errCtlUsage)
	}
	gen, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil || gen == 0 {
		return 0, fmt.Errorf("%w: generation %q: want a positive integer", errCtlUsage, args[0])
	}
	return gen, nil
}

func renderPlan(w io.Writer, p *pb.Plan) {
	fmt.Fprintf(w, "generation:\t%d\nplanner:\t%s\ncreated:\t%s\ndigest:\t%s\n\n", p.GetGeneration(), dashIfZero(p.GetPlannerId()),
		timeCell(p.GetCreatedAt()), planDigest(p))
	tableRow(w, "ENDPOINT", "TTL", "TARGET", "ADDRESS", "WEIGHT")
	for _, e := range p.GetEndpoints() {
		renderTargets(w, []any{e.GetName(), e.GetTtl()}, e.GetTargets(), nil)
	}
}

// planDigest is the digest the cluster stored with p, or, for a plan of a
// node that predates digests, the one the contract defines.
func planDigest(p *pb.Plan) string {
	if d := p.GetDigest(); d != "" {
		return d
	}
	return contract.PlanDigest(p)
}

// renderTargets writes one row per target; the endpoint's own cells (head
// before the targets, tail after) go on its first row only, blank below.
func renderTargets(w io.Writer, head []any, targets []*pb.Target, tail []any) {
	if len(targets) == 0 {
		targets = []*pb.Target{nil}
	}
	for i, t := range targets {
		var cells []any
		if i == 0 {
			cells = append(cells, head...)
		} else {
			for range head {
				cells = append(cells, "")
			}
		}
		if t == nil {
			cells = append(cells, "-", "-", "-")
		} else {
			cells = append(cells, dashIfZero(t.GetId()), t.GetAddress(), t.GetWeight())
		}
		if i == 0 {
			cells = append(cells, tail...)
		} else {
			// Empty cells keep the tail's columns aligned below.
			for range tail {
				cells = append(cells, "")
			}
		}
		tableRow(w, cells...)
	}
}

// --- submit ---

func setupSubmit(fs *flag.FlagSet) func(context.Context, *ctl, []string) error {
	file := fs.String("f", "", "plan file: protojson of dnsplan.v1.Plan; - reads stdin")
	force := fs.Bool("force", false, "skip the velocity limit (never the other checks)")
	var parent optionalUint
	fs.Var(&parent, "expect-parent", "store the plan only if the newest plan is generation `GEN` (0: none yet), else PARENT_MOVED")
	digest := fs.String("expect-digest", "", "store the plan only if its digest is `DIGEST` (as ctl plan and ctl diff show it), else DIGEST")
	dryRun := fs.Bool("dry-run", false, "store nothing: show what the plan changes against the newest plan, and the rules it would meet if applied now")
	delta := fs.Bool("delta", false, "the file holds only the endpoints the plan adds or replaces on its parent (--expect-parent, default the newest plan now); the cluster stores the whole plan they make")
	remove := fs.String("remove", "", "with --delta: comma-separated `NAMES` of the parent's endpoints the plan leaves out")
	return func(ctx context.Context, x *ctl, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		if *file == "" {
			return fmt.Errorf("%w: submit needs -f FILE (or -f - for stdin)", errCtlUsage)
		}
		if *remove != "" && !*delta {
			return fmt.Errorf("%w: --remove needs --delta", errCtlUsage)
		}
		if *digest != "" {
			if err := contract.ValidateDigest(*digest); err != nil {
				return fmt.Errorf("%w: --expect-digest: %v", errCtlUsage, err)
			}
		}
		plan, err := readPlanFile(*file, os.Stdin)
		if err != nil {
			return err
		}
		c, err := x.client()
		if err != nil {
			return err
		}
		var change *pb.PlanDelta
		whole := plan // the plan the submission stores
		if *delta {
			change = &pb.PlanDelta{Endpoints: plan.GetEndpoints()}
			if *remove != "" {
				change.Remove = strings.Split(*remove, ",")
			}
			plan = &pb.Plan{PlannerId: plan.GetPlannerId(), CreatedAt: plan.GetCreatedAt()}
			if err := contract.ValidateDelta(plan, change); err != nil {
				return fmt.Errorf("%w: %v", errCtlUsage, err)
			}
			var base *pb.Plan
			if parent.set {
				if parent.v > 0 {
					base, err = c.GetPlan(ctx, &pb.GetPlanRequest{Generation: parent.v})
				}
			} else if base, err = c.GetPlan(ctx, &pb.GetPlanRequest{Newest: true}); status.Code(err) == codes.NotFound {
				base, err = nil, nil // no plan stored: a delta on nothing
			}
			if err != nil {
				return fmt.Errorf("reading the parent plan: %w", err)
			}
			if !parent.set {
				parent.v, parent.set = base.GetGeneration(), true
			}
			if whole, err = contract.ApplyDelta(base, plan, change); err != nil {
				return err
			}
		}
		if *dryRun {
			req := &pb.DiffPlansRequest{Plan: whole, Force: *force}
			if *delta {
				req.FromGeneration = parent.v // what the delta changes; 0 is the newest
			}
			d, err := c.DiffPlans(ctx, req)
			if err != nil {
				return err
			}
			source := *file
			if *delta {
				source += " --delta"
				if *remove != "" {
					source += " --remove " + *remove
				}
			}
			return x.show(d, func(w io.Writer) { renderDiff(w, d, source) })
		}
		req := &pb.SubmitPlanRequest{Plan: plan, Force: *force, ExpectedParent: parent.ptr(), ExpectedDigest: *digest, Delta: change}
		resp, err := c.SubmitPlan(ctx, req)
		if err != nil {
			return err
		}
		return x.show(resp, func(w io.Writer) {
			fmt.Fprintf(w, "generation %d\ndigest %s\n", resp.GetGeneration(), contract.PlanDigest(whole))
			if resp.GetFrozen() {
				fmt.Fprintf(w, "the cluster froze itself: %s\n", resp.GetFreezeReason())
			}
		})
	}
}

// optionalUint is a flag that may be absent, which differs from 0.
type optionalUint struct {
	v   uint64
	set bool
}

func (o *optionalUint) String() string {
	if o == nil || !o.set {
		return ""
	}
	return strconv.FormatUint(o.v, 10)
}

func (o *optionalUint) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return errors.New("want a non-negative integer")
	}
	o.v, o.set = v, true
	return nil
}

func (o *optionalUint) ptr() *uint64 {
	if !o.set {
		return nil
	}
	return &o.v
}

// --- rollback ---

func setupRollback(fs *flag.FlagSet) func(context.Context, *ctl, []string) error {
	to := fs.Uint64("to", 0, "roll each endpoint back to the records it served at generation `GEN` (or the newest before it); 0: to what it served before its current records")
	reason := fs.String("reason", "", "why, for the history")
	force := fs.Bool("force", false, "skip the velocity limit and the per-family rule (operators only)")
	return func(ctx context.Context, x *ctl, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		c, err := x.client()
		if err != nil {
			return err
		}
		resp, err := c.RollbackPlan(ctx, &pb.RollbackPlanRequest{ToGeneration: *to, Reason: *reason, Force: *force})
		if err != nil {
			return err
		}
		return x.show(resp, func(w io.Writer) {
			fmt.Fprintf(w, "generation %d: the earlier records, stored as a new plan; the enactors apply it like any plan\n", resp.GetGeneration())
			if len(resp.GetKept()) > 0 {
				fmt.Fprintf(w, "kept the current records of (none of that generation left): %s\n", strings.Join(resp.GetKept(), ", "))
			}
		})
	}
}

// --- diff ---

func setupDiff(fs *flag.FlagSet) func(context.Context, *ctl, []string) error {
	stale := fs.Bool("stale", false, "read the answering node's replica, which may lag")
	return func(ctx context.Context, x *ctl, args []string) error {
		if len(args) != 2 {
			return fmt.Errorf("%w: diff wants two generations, GEN_A GEN_B", errCtlUsage)
		}
		a, err := parseGeneration(args[:1])
		if err != nil {
			return err
		}
		b, err := parseGeneration(args[1:])
		if err != nil {
			return err
		}
		c, err := x.client()
		if err != nil {
			return err
		}
		d, err := c.DiffPlans(ctx, &pb.DiffPlansRequest{FromGeneration: a, ToGeneration: b, Stale: *stale})
		if err != nil {
			return err
		}
		return x.show(d, func(w io.Writer) { renderDiff(w, d, "") })
	}
}

// renderDiff prints a diff endpoint by endpoint: what changes, the change
// of capacity per family, and the rules; then each broken rule's reason.
// file, for a dry run, is the plan file the next command would submit.
// renderDiff writes a diff; source, if set, is how ctl submit was given
// the plan (-f's file and the delta flags), for the command that stores
// exactly what was reviewed.
func renderDiff(w io.Writer, d *pb.PlanDiff, source string) {
	side := func(gen uint64, digest string) string {
		switch {
		case gen == 0 && digest == "":
			return "no plan"
		case gen == 0:
			return "this plan, not stored   " + digest
		}
		return fmt.Sprintf("generation %d   %s", gen, digest)
	}
	fmt.Fprintf(w, "from:\t%s\nto:\t%s\n\n", side(d.GetFromGeneration(), d.GetFromDigest()), side(d.GetToGeneration(), d.GetToDigest()))
	tableRow(w, "ENDPOINT", "CHANGE", "ADDED", "REMOVED", "WEIGHTS", "A", "AAAA", "RULES")
	var broken []string
	for _, e := range d.GetEndpoints() {
		weights := make([]string, 0, len(e.GetWeights()))
		for _, c := range e.GetWeights() {
			weights = append(weights, fmt.Sprintf("%s %d→%d", c.GetAddress(), c.GetFrom(), c.GetTo()))
		}
		if e.GetTtlFrom() != e.GetTtlTo() {
			weights = append(weights, fmt.Sprintf("ttl %d→%d", e.GetTtlFrom(), e.GetTtlTo()))
		}
		rules := "-"
		if len(e.GetRules()) > 0 {
			var bad []string
			for _, r := range e.GetRules() {
				if !r.GetOk() {
					bad = append(bad, r.GetReasonCode())
					broken = append(broken, fmt.Sprintf("%s: %s: %s", e.GetEndpoint(), r.GetRule(), r.GetReason()))
				}
			}
			rules = "ok"
			if len(bad) > 0 {
				rules = "breaks " + strings.Join(bad, ",")
			}
		}
		change := e.GetChange()
		if change == contract.ChangeRemoved {
			change = "not in plan (keeps its records)"
		}
		tableRow(w, e.GetEndpoint(), change, dashIfZero(strings.Join(e.GetAdded(), " ")), dashIfZero(strings.Join(e.GetRemoved(), " ")),
			dashIfZero(strings.Join(weights, " ")), percentCell(e.AChangePercent), percentCell(e.AaaaChangePercent), rules)
	}
	if n := d.GetUnchanged(); n > 0 {
		fmt.Fprintf(w, "(%d endpoints unchanged)\n", n)
	}
	for _, b := range broken {
		fmt.Fprintf(w, "\n%s", b)
	}
	if len(broken) > 0 {
		fmt.Fprintln(w)
	}
	if doubt := d.GetDoubt(); doubt != "" {
		fmt.Fprintf(w, "\nsubmitting it would freeze the cluster: %s\n", doubt)
	}
	if source != "" {
		fmt.Fprintf(w, "\nnothing stored. To store exactly this plan on generation %d:\n  dnsplan ctl submit -f %s --expect-parent %d --expect-digest %s\n",
			d.GetNewestGeneration(), source, d.GetNewestGeneration(), d.GetToDigest())
	}
}

// percentCell prints a capacity change ("-" when the first plan serves
// none of the family).
func percentCell(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%+.0f%%", *p)
}

// readPlanFile reads a plan from path, or from stdin when path is "-".
func readPlanFile(path string, stdin io.Reader) (*pb.Plan, error) {
	var b []byte
	var err error
	if path == "-" {
		path = "stdin"
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading plan: %w", err)
	}
	p, err := parsePlan(b)
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", path, err)
	}
	return p, nil
}

// parsePlan decodes a plan in protojson. Unknown fields are errors: a
// misspelt field would otherwise be silently dropped from the plan.
func parsePlan(b []byte) (*pb.Plan, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("empty: want a JSON object in the form of dnsplan.v1.Plan")
	}
	p := &pb.Plan{}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("not a dnsplan.v1.Plan in JSON: %w", err)
	}
	return p, nil
}

// --- applied ---

func setupApplied(fs *flag.FlagSet) func(context.Context, *ctl, []string) error {
	stale := fs.Bool("stale", false, "read the answering node's replica, which may lag")
	return func(ctx context.Context, x *ctl, args []string) error {
		if len(args) > 1 {
			return fmt.Errorf("%w: want at most one endpoint", errCtlUsage)
		}
		c, err := x.client()
		if err != nil {
			return err
		}
		if len(args) == 1 {
			a, err := c.GetApplied(ctx, &pb.GetAppliedRequest{Endpoint: args[0], Stale: *stale})
			if err != nil {
				return err
			}
			return x.show(a, func(w io.Writer) { renderApplied(w, []*pb.AppliedEndpoint{a}) })
		}
		applied, err := c.AllApplied(ctx, *stale)
		if err != nil {
			return err
		}
		return x.show(&pb.ListAppliedResponse{Endpoints: applied}, func(w io.Writer) { renderApplied(w, applied) })
	}
}

func renderApplied(w io.Writer, endpoints []*pb.AppliedEndpoint) {
	tableRow(w, "ENDPOINT", "GEN", "TTL", "TARGET", "ADDRESS", "WEIGHT", "ENACTOR", "TOKEN", "REVISION", "APPLIED")
	for _, a := range endpoints {
		renderTargets(w, []any{a.GetEndpoint(), a.GetGeneration(), a.GetTtl()}, a.GetTargets(),
			[]any{dashIfZero(a.GetEnactorId()), a.GetLeaseToken(), a.GetRevision(), timeCell(a.GetAppliedAt())})
	}
}

// --- leases ---

func setupLeases(fs *flag.FlagSet) func(context.Context, *ctl, []string) error {
	stale := fs.Bool("stale", false, "read the answering node's replica, which may lag")
	return func(ctx context.Context, x *ctl, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		c, err := x.client()
		if err != nil {
			return err
		}
		resp, err := c.ListLeases(ctx, &pb.ListLeasesRequest{Stale: *stale})
		if err != nil {
			return err
		}
		now := x.now()
		return x.show(resp, func(w io.Writer) { renderLeases(w, resp.GetLeases(), now) })
	}
}

// renderLeases shows each lease's time left as seen from now (this
// machine's clock: a hint for the operator, not what the cluster decides).
func renderLeases(w io.Writer, leases []*pb.Lease, now time.Time) {
	tableRow(w, "NAME", "HOLDER", "TOKEN", "TTL", "EXPIRES", "LEFT")
	for _, l := range leases {
		left := "-"
		if l.GetExpiresAt() != nil {
			if d := l.GetExpiresAt().AsTime().Sub(now); d > 0 {
				left = d.Round(100 * time.Millisecond).String()
			} else {
				left = "expired"
			}
		}
		ttl := "-"
		if l.GetTtl() != nil {
			ttl = l.GetTtl().AsDuration().String()
		}
		tableRow(w, l.GetName(), dashIfZero(l.GetHolder()), l.GetToken(), ttl, timeCell(l.GetExpiresAt()), left)
	}
}

// --- cleanup ---

func setupCleanup(fs *flag.FlagSet) func(context.Context, *ctl, []string) error {
	keep := fs.Uint("keep", 0, "how many of the newest plans to keep regardless (at least 1; applied plans are always kept)")
	return func(ctx context.Context, x *ctl, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		if *keep < 1 || uint64(*keep) > uint64(^uint32(0)) {
			return fmt.Errorf("%w: cleanup needs --keep N with N at least 1", errCtlUsage)
		}
		c, err := x.client()
		if err != nil {
			return err
		}
		resp, err := c.CleanupPlans(ctx, &pb.CleanupPlansRequest{KeepLast: uint32(*keep)})
		if err != nil {
			return err
		}
		return x.show(resp, func(w io.Writer) { renderCleanup(w, resp.GetDeleted()) })
	}
}

func renderCleanup(w io.Writer, deleted []uint64) {
	if len(deleted) == 0 {
		fmt.Fprintln(w, "deleted no plans")
		return
	}
	gens := make([]string, len(deleted))
	for i, g := range deleted {
		gens[i] = strconv.FormatUint(g, 10)
	}
	fmt.Fprintf(w, "deleted %d plans: generations %s\n", len(deleted), strings.Join(gens, ", "))
}

// --- history ---

func setupHistory(fs *flag.FlagSet) func(context.Context, *ctl, []string) error {
	limit := fs.Uint("limit", 0, "show only the newest N events; 0 shows all the cluster keeps")
	stale := fs.Bool("stale", false, "read the answering node's replica, which may lag")
	endpoint := fs.String("endpoint", "", "show only the events of endpoint `NAME`: its timeline")
	since := fs.String("since", "", "show only the events from `TIME` on: RFC 3339, or a duration back from the cluster's time now (1h)")
	return func(ctx context.Context, x *ctl, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		if uint64(*limit) > uint64(^uint32(0)) {
			return fmt.Errorf("%w: --limit %d is too large", errCtlUsage, *limit)
		}
		req := &pb.ListHistoryRequest{Limit: uint32(*limit), Stale: *stale, Endpoint: *endpoint}
		if *since != "" {
			if err := parseSince(*since, req); err != nil {
				return fmt.Errorf("%w: --since: %v", errCtlUsage, err)
			}
		}
		c, err := x.client()
		if err != nil {
			return err
		}
		resp, err := c.ListHistory(ctx, req)
		if err != nil {
			return err
		}
		if x.format == "jsonl" {
			for _, ev := range resp.GetEvents() {
				if err := writeJSONLine(x.stdout, ev); err != nil {
					return err
				}
			}
			return nil
		}
		return x.show(resp, func(w io.Writer) { renderHistory(w, resp.GetEvents()) })
	}
}

// parseSince reads --since into req: RFC 3339, or a duration back from
// the cluster's time now (the events' clock, which an idle stretch can put
// behind this machine's), which the cluster resolves.
func parseSince(s string, req *pb.ListHistoryRequest) error {
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		req.Within = durationpb.New(d)
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("%q is neither RFC 3339 nor a duration", s)
	}
	req.Since = timestamppb.New(t)
	return nil
}

// changeCell is an apply event's change of records: the generation served
// before, then what was added (+), removed (-) and reweighted.
func changeCell(e *pb.HistoryEvent) string {
	d := e.GetDiff()
	if d == nil {
		return "-"
	}
	parts := []string{fmt.Sprintf("from %v:", dashIfZero(e.GetPreviousGeneration()))}
	for _, a := range d.GetAdded() {
		parts = append(parts, "+"+a)
	}
	for _, a := range d.GetRemoved() {
		parts = append(parts, "-"+a)
	}
	for _, c := range d.GetWeights() {
		parts = append(parts, fmt.Sprintf("%s %d→%d", c.GetAddress(), c.GetFrom(), c.GetTo()))
	}
	if d.GetTtlFrom() != d.GetTtlTo() {
		parts = append(parts, fmt.Sprintf("ttl %d→%d", d.GetTtlFrom(), d.GetTtlTo()))
	}
	if n := d.GetOmitted(); n > 0 {
		parts = append(parts, fmt.Sprintf("(%d more)", n))
	}
	if len(parts) == 1 {
		parts = append(parts, "same records")
	}
	return strings.Join(parts, " ")
}

// renderHistory prints the audit history from its codes: the kind, the
// outcome and, for a rejection or refusal, its reason code (an event of a
// node that predates the codes shows its words).
func renderHistory(w io.Writer, events []*pb.HistoryEvent) {
	tableRow(w, "INDEX", "TIME", "KIND", "CALLER", "ACTOR", "GEN", "ENDPOINT", "LEASE", "TOKEN", "OUTCOME", "CHANGE", "REASON")
	for _, e := range events {
		kind, outcome := e.GetKind(), e.GetOutcome()
		if e.GetKindCode() != pb.HistoryKind_HISTORY_KIND_UNSPECIFIED {
			kind = contract.KindName(e.GetKindCode())
		}
		if e.GetOutcomeCode() != pb.HistoryOutcome_HISTORY_OUTCOME_UNSPECIFIED {
			outcome = contract.OutcomeName(e.GetOutcomeCode())
		}
		if code := e.GetReasonCode(); code != "" {
			outcome += " " + code
		}
		tableRow(w, e.GetIndex(), timeCell(e.GetTime()), kind, dashIfZero(e.GetCaller()), dashIfZero(e.GetActor()), dashIfZero(e.GetGeneration()),
			dashIfZero(e.GetEndpoint()), dashIfZero(e.GetLeaseName()), dashIfZero(e.GetToken()), dashIfZero(outcome), changeCell(e), e.GetReason())
	}
}

// --- cluster changes ---

func setupFreeze(frozen bool) func(fs *flag.FlagSet) func(context.Context, *ctl, []string) error {
	return func(fs *flag.FlagSet) func(context.Context, *ctl, []string) error {
		reason := new(string)
		if frozen {
			reason = fs.String("reason", "", "why, for the status and the history")
		}
		return func(ctx context.Context, x *ctl, args []string) error {
			if err := noArgs(args); err != nil {
				return err
			}
			c, err := x.client()
			if err != nil {
				return err
			}
			resp, err := c.SetFreeze(ctx, &pb.SetFreezeRequest{Frozen: frozen, Reason: *reason})
			if err != nil {
				return err
			}
			return x.show(resp, func(w io.Writer) {
				if resp.GetFrozen() {
					fmt.Fprintln(w, "frozen: applies are refused until unfreeze")
				} else {
					fmt.Fprintln(w, "unfrozen: applies are allowed")
				}
			})
		}
	}
}

func setupTransfer(fs *flag.FlagSet) func(context.Context, *ctl, []string) error {
	to := fs.String("to", "", "id of the voter to hand leadership to; empty lets the leader choose")
	return func(ctx context.Context, x *ctl, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		c, err := x.client()
		if err != nil {
			return err
		}
		resp, err := c.TransferLeadership(ctx, &pb.TransferLeadershipRequest{Id: *to})
		if err != nil {
			return err
		}
		return x.show(resp, func(w io.Writer) { fmt.Fprintf(w, "leader: %s\n", dashIfZero(resp.GetLeaderId())) })
	}
}

func setupAddVoter(fs *flag.FlagSet) func(context.Context, *ctl, []string) error {
	id := fs.String("id", "", "the new node's id")
	raftAddr := fs.String("raft-addr", "", "the new node's Raft address, as peers reach it")
	grpcAddr := fs.String("grpc-addr", "", "the new node's gRPC address, as clients reach it")
	return func(ctx context.Context, x *ctl, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		if *id == "" || *raftAddr == "" || *grpcAddr == "" {
			return fmt.Errorf("%w: add-voter needs --id, --raft-addr and --grpc-addr", errCtlUsage)
		}
		c, err := x.client()
		if err != nil {
			return err
		}
		resp, err := c.AddVoter(ctx, &pb.AddVoterRequest{Id: *id, RaftAddr: *raftAddr, GrpcAddr: *grpcAddr})
		if err != nil {
			return err
		}
		return x.show(resp, func(w io.Writer) { fmt.Fprintf(w, "added voter %s\n", *id) })
	}
}

func setupRemoveServer(*flag.FlagSet) func(context.Context, *ctl, []string) error {
	return func(ctx context.Context, x *ctl, args []string) error {
		if len(args) != 1 || args[0] == "" {
			return fmt.Errorf("%w: remove-server needs one argument, the node's id", errCtlUsage)
		}
		c, err := x.client()
		if err != nil {
			return err
		}
		resp, err := c.RemoveServer(ctx, &pb.RemoveServerRequest{Id: args[0]})
		if err != nil {
			return err
		}
		return x.show(resp, func(w io.Writer) { fmt.Fprintf(w, "removed %s\n", args[0]) })
	}
}

// --- the cluster's policy ---

func setupConfig(fs *flag.FlagSet) func(context.Context, *ctl, []string) error {
	stale := fs.Bool("stale", false, "config get: read this node's replica instead of the leader's")
	return func(ctx context.Context, x *ctl, args []string) error {
		if len(args) == 0 {
			return fmt.Errorf("%w: config needs get or set KEY VALUE", errCtlUsage)
		}
		var call func(context.Context, *client.Client) (*pb.ClusterConfig, error)
		switch args[0] {
		case "get":
			if err := noArgs(args[1:]); err != nil {
				return err
			}
			req := &pb.GetConfigRequest{Stale: *stale}
			call = func(ctx context.Context, c *client.Client) (*pb.ClusterConfig, error) { return c.GetConfig(ctx, req) }
		case "set":
			if len(args) != 3 {
				return fmt.Errorf("%w: config set needs KEY VALUE", errCtlUsage)
			}
			req, err := parseConfigSetting(args[1], args[2])
			if err != nil {
				return err
			}
			call = func(ctx context.Context, c *client.Client) (*pb.ClusterConfig, error) { return c.SetConfig(ctx, req) }
		default:
			return fmt.Errorf("%w: config %q: want get or set", errCtlUsage, args[0])
		}
		c, err := x.client()
		if err != nil {
			return err
		}
		resp, err := call(ctx, c)
		if err != nil {
			return err
		}
		return x.show(resp, func(w io.Writer) { renderConfig(w, resp) })
	}
}

// parseConfigSetting turns `config set KEY VALUE` into a request,
// checking the value as the cluster will.
func parseConfigSetting(key, value string) (*pb.SetConfigRequest, error) {
	switch key {
	case "max-capacity-drop":
		f, err := parseFraction(key, value, fsm.ValidateMaxCapacityDrop, "from 0 (no drop without force) to 1 (no limit)")
		if err != nil {
			return nil, err
		}
		return &pb.SetConfigRequest{MaxCapacityDrop: &f}, nil
	case "velocity-window":
		d, err := time.ParseDuration(value)
		if err == nil {
			err = fsm.ValidateVelocityWindow(durationpb.New(d))
		}
		if err != nil {
			return nil, fmt.Errorf("%w: velocity-window %q: want a duration above 0 and at most %s, like 60s", errCtlUsage, value, fsm.MaxVelocityWindow)
		}
		return &pb.SetConfigRequest{VelocityWindow: durationpb.New(d)}, nil
	case "max-plan-change":
		f, err := parseFraction(key, value, fsm.ValidateMaxPlanChange, "above 0, up to 1 (no limit)")
		if err != nil {
			return nil, err
		}
		return &pb.SetConfigRequest{MaxPlanChange: &f}, nil
	case "max-velocity-refusals":
		n, err := strconv.ParseUint(value, 10, 32)
		if err == nil {
			err = fsm.ValidateMaxVelocityRefusals(uint32(n))
		}
		if err != nil {
			return nil, fmt.Errorf("%w: max-velocity-refusals %q: want a count from 0 (never) to %d", errCtlUsage, value, fsm.MaxVelocityRefusalsLimit)
		}
		return &pb.SetConfigRequest{MaxVelocityRefusals: proto.Uint32(uint32(n))}, nil
	case "max-read-back-failures":
		f, err := parseFraction(key, value, fsm.ValidateMaxReadBackFailures, "from 0.5 to 1 (never)")
		if err != nil {
			return nil, err
		}
		return &pb.SetConfigRequest{MaxReadBackFailures: &f}, nil
	case "design":
		return nil, fmt.Errorf("%w: the design is fixed when the cluster is founded and never changes", errCtlUsage)
	}
	return nil, fmt.Errorf("%w: unknown setting %q: want max-capacity-drop, velocity-window, max-plan-change, max-velocity-refusals or max-read-back-failures", errCtlUsage, key)
}

// parseFraction reads a fraction setting, checked as the cluster will.
func parseFraction(key, value string, validate func(float64) error, want string) (float64, error) {
	f, err := strconv.ParseFloat(value, 64)
	if err == nil {
		err = validate(f)
	}
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q: want a fraction %s", errCtlUsage, key, value, want)
	}
	return f, nil
}

func renderConfig(w io.Writer, c *pb.ClusterConfig) {
	tableRow(w, "design", string(contract.DesignOf(c.GetDesign())))
	tableRow(w, "max-capacity-drop", strconv.FormatFloat(c.GetMaxCapacityDrop(), 'g', -1, 64))
	tableRow(w, "velocity-window", c.GetVelocityWindow().AsDuration())
	if c.MaxPlanChange != nil {
		tableRow(w, "max-plan-change", strconv.FormatFloat(c.GetMaxPlanChange(), 'g', -1, 64))
	} else {
		tableRow(w, "max-plan-change", "- (no limit: founded before it existed)")
	}
	tableRow(w, "max-velocity-refusals", c.GetMaxVelocityRefusals())
	if c.MaxReadBackFailures != nil {
		tableRow(w, "max-read-back-failures", strconv.FormatFloat(c.GetMaxReadBackFailures(), 'g', -1, 64))
	} else {
		tableRow(w, "max-read-back-failures", "- (never: founded before it existed)")
	}
}
