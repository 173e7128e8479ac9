package scenario

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/internal/poll"
	"github.com/dnsplan/dnsplan/probe"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// The broken-planner run: twelve endpoints of two load balancers each, in
// the planner's inventory order. The planner's source breaks for the first
// half; a plan cannot empty an endpoint (each needs a target of weight >
// 0), so the planner plans each of those with the one address the broken
// source gave, BadAddress, in place of its two load balancers.
var inventory = []string{
	"shop.dnsplan.test.", "auth.dnsplan.test.", "billing.dnsplan.test.", "cart.dnsplan.test.",
	"catalog.dnsplan.test.", "checkout.dnsplan.test.", "images.dnsplan.test.", "login.dnsplan.test.",
	"orders.dnsplan.test.", "search.dnsplan.test.", "static.dnsplan.test.", "users.dnsplan.test.",
}

// BadAddress is the address the broken source gives (TEST-NET-3).
const BadAddress = "203.0.113.66"

// The broken-planner run's other actors: the operator who reviews the
// frozen plan, and the observers.
const (
	operatorID = "operator"
	observerID = "observer"
)

// watchInterval is the pause between two rounds of the answer watch.
const watchInterval = 20 * time.Millisecond

// inventoryPlan is the planner's plan of every endpoint of the inventory:
// endpoint i behind 192.0.2.(10i+11) and 192.0.2.(10i+12), or, with broken,
// the first half behind BadAddress alone.
func inventoryPlan(broken bool) *pb.Plan {
	p := &pb.Plan{PlannerId: plannerID}
	for i, name := range inventory {
		targets := []*pb.Target{
			{Id: "lb-1", Address: fmt.Sprintf("192.0.2.%d", 10*i+11), Weight: 100},
			{Id: "lb-2", Address: fmt.Sprintf("192.0.2.%d", 10*i+12), Weight: 100},
		}
		if broken && i < len(inventory)/2 {
			targets = []*pb.Target{{Id: "lb-1", Address: BadAddress, Weight: 100}}
		}
		p.Endpoints = append(p.Endpoints, &pb.EndpointPlan{Name: name, Ttl: 5, Targets: targets})
	}
	return p
}

// BrokenPlannerVerdict is what a broken-planner run observed.
type BrokenPlannerVerdict struct {
	// FrozeOnDoubt: the bad plan's submission was answered frozen, with a
	// doubt reason, and every node's status then said frozen for it.
	FrozeOnDoubt bool `json:"froze_on_doubt"`
	// OldRecordsServed: from the moment the healthy plan was served to
	// the end, every DNS answer seen (at each step, while waiting, and by
	// the watch in between) was its endpoint's healthy records, and the
	// checker saw no empty answer (I2).
	OldRecordsServed bool `json:"old_records_served"`
	// BadAddressServed: some answer held BadAddress.
	BadAddressServed bool `json:"bad_address_served"`
	// Restored: after the rollback and the unfreeze, every node served
	// every endpoint's healthy records at the rollback's generation or
	// newer, and no node was frozen.
	Restored bool `json:"restored"`
}

// ExpectedBrokenPlanner is how the fixed design behaves: it freezes, DNS
// keeps the old records, and the operator's rollback and unfreeze bring
// service back without the bad plan ever being served.
func ExpectedBrokenPlanner() BrokenPlannerVerdict {
	return BrokenPlannerVerdict{FrozeOnDoubt: true, OldRecordsServed: true, BadAddressServed: false, Restored: true}
}

// BrokenPlannerReport is the outcome of a broken-planner run.
type BrokenPlannerReport struct {
	Scenario string          `json:"scenario"`
	Design   contract.Design `json:"design"`
	// Variant names a deliberately weakened cluster (the checker's
	// self-test); empty for the real one.
	Variant string `json:"variant,omitempty"`
	// Endpoints are the run's endpoints; Broken, the ones the bad plan
	// points at BadAddress; Healthy, each endpoint's healthy addresses.
	Endpoints  []string            `json:"endpoints"`
	Broken     []string            `json:"broken"`
	BadAddress string              `json:"bad_address"`
	Healthy    map[string][]string `json:"healthy"`
	BrokenPlannerVerdict
	Expected   BrokenPlannerVerdict `json:"expected"`
	AsExpected bool                 `json:"as_expected"`
	// Findings explain the verdict, one line each.
	Findings []string `json:"findings"`
	// Answers counts the DNS answers judged; Unanswered, the queries that
	// got none (a timeout, SERVFAIL: unavailability, not a wrong answer).
	Answers    int            `json:"answers_checked"`
	Unanswered int            `json:"unanswered"`
	Checker    CheckerSummary `json:"checker"`
	Timeline   []Event        `json:"timeline"`
	Took       time.Duration  `json:"-"`
	TookMS     int64          `json:"took_ms"`
}

// RunBrokenPlanner runs the broken-planner scenario on a fresh cluster of
// the fixed design: a planner whose source breaks submits a plan that
// repoints half the endpoints at one wrong address; the cluster is
// expected to freeze on doubt and keep serving the old records until an
// operator rolls back and unfreezes. An error means the run could not be
// carried out; a cluster that misbehaves is a report whose AsExpected is
// false.
func RunBrokenPlanner(ctx context.Context, opts Options) (*BrokenPlannerReport, error) {
	opts.setDefaults()
	began := time.Now()
	rep := &BrokenPlannerReport{
		Scenario:   BrokenPlanner,
		Design:     contract.Fixed,
		Endpoints:  inventory,
		Broken:     inventory[:len(inventory)/2],
		BadAddress: BadAddress,
		Healthy:    map[string][]string{},
		Expected:   ExpectedBrokenPlanner(),
	}
	for _, ep := range inventoryPlan(false).GetEndpoints() {
		rep.Healthy[ep.GetName()] = expectedAnswer(&pb.AppliedEndpoint{Targets: ep.GetTargets()}).Addresses
	}
	var configure func(*cluster.Config)
	switch {
	case opts.noDoubt && opts.noVelocity:
		rep.Variant = "freeze on doubt and the velocity limit off (max_plan_change 1, max_capacity_drop 1; checker self-test)"
		configure = func(cfg *cluster.Config) { cfg.MaxPlanChange, cfg.MaxCapacityDrop = 1, proto.Float64(1) }
	case opts.noDoubt:
		rep.Variant = "freeze on doubt off (max_plan_change 1; checker self-test)"
		configure = func(cfg *cluster.Config) { cfg.MaxPlanChange = 1 }
	}
	s, err := newStage(ctx, opts, stageConfig{
		log:       opts.Logger.With("component", "scenario", "scenario", BrokenPlanner),
		design:    contract.Fixed,
		configure: configure,
		observer:  auth.Identity{Role: auth.RoleReader, Name: observerID},
		endpoints: inventory,
	})
	if err != nil {
		return nil, err
	}
	defer s.close()

	b := &brokenRun{stage: s, report: rep, watch: &answerWatch{healthy: rep.Healthy}}
	closeClients, err := b.dialActors()
	if err != nil {
		s.stopChecker()
		return nil, err
	}
	defer closeClients()
	b.start = time.Now()
	err = b.script(ctx)
	b.summarize(s.stopChecker())
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", BrokenPlanner, err)
	}
	rep.Took = time.Since(began)
	rep.TookMS = rep.Took.Milliseconds()
	return rep, nil
}

// brokenRun is one broken-planner run in progress. Only the goroutine
// running the script touches it (the enactors, the checker and the answer
// watch have their own state).
type brokenRun struct {
	*stage
	report *BrokenPlannerReport
	// planner and operator are the actors' clients, each dialing with a
	// certificate of its role and name.
	planner, operator *client.Client
	loops             []*loop
	watch             *answerWatch
	// judging: the healthy plan is served, so every answer is judged.
	judging bool
}

// dialActors makes the planner's and the operator's clients.
func (b *brokenRun) dialActors() (closeAll func(), err error) {
	if b.planner, err = b.c.client(auth.Identity{Role: auth.RolePlanner, Name: plannerID}, b.opts.Logger); err != nil {
		return nil, err
	}
	if b.operator, err = b.c.client(auth.Identity{Role: auth.RoleOperator, Name: operatorID}, b.opts.Logger); err != nil {
		b.planner.Close()
		return nil, err
	}
	return func() {
		b.planner.Close()
		b.operator.Close()
	}, nil
}

// script is the run: a healthy plan applied by the enactor loops, the
// broken one, the operator's review, rollback and unfreeze. The enactor
// loops run from the second step to the end, as they would in production.
func (b *brokenRun) script(ctx context.Context) error {
	rep := b.report
	// 1. The healthy plan.
	resp, err := b.planner.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: inventoryPlan(false)})
	if err != nil {
		return fmt.Errorf("planner: submit: %w", err)
	}
	good := resp.GetGeneration()
	if _, err := b.record(ctx, plannerID, fmt.Sprintf("submit a plan for %d endpoints, two load balancers each", len(inventory)),
		fmt.Sprintf("stored as generation %d", good)); err != nil {
		return err
	}

	// 2. The enactor loops apply it; from now on every answer is judged.
	stopEnactors, err := b.startEnactors(ctx)
	if err != nil {
		return err
	}
	defer stopEnactors()
	took, served := b.waitServed(ctx, good, time.Now(), b.opts.RecoveryTimeout)
	if !served {
		return fmt.Errorf("generation %d was not served by every node within %s", good, b.opts.RecoveryTimeout)
	}
	b.judging = true
	stopWatch := b.watch.start(ctx, b.stage)
	defer stopWatch()
	how, err := b.appliedBy(ctx)
	if err != nil {
		return err
	}
	if _, err := b.record(ctx, delayedID+", "+otherID, "run the enactor loops (dnsplan enactor)",
		fmt.Sprintf("%s; every node served it within %s of the loops' start", how, took)); err != nil {
		return err
	}

	// 3. The planner's source breaks for half the endpoints.
	resp, submitErr := b.planner.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: inventoryPlan(true)})
	var bad uint64
	result := ""
	switch {
	case submitErr != nil:
		result = "refused, " + errorText(submitErr)
	case resp.GetFrozen():
		bad = resp.GetGeneration()
		result = fmt.Sprintf("stored as generation %d, frozen=true: %s", bad, resp.GetFreezeReason())
	default:
		bad = resp.GetGeneration()
		result = fmt.Sprintf("stored as generation %d, frozen=false", bad)
	}
	ev, err := b.record(ctx, plannerID, fmt.Sprintf("source broken for %d endpoints: submit a plan with each of them at %s alone", len(rep.Broken), BadAddress), result)
	if err != nil {
		return err
	}
	statuses, allFrozen, _, err := b.statuses(ctx)
	if err != nil {
		return err
	}
	ev.Detail = statuses
	rep.FrozeOnDoubt = submitErr == nil && resp.GetFrozen() && isDoubt(resp.GetFreezeReason()) && allFrozen
	switch {
	case rep.FrozeOnDoubt:
		b.finding("step %d: the submission was answered frozen on doubt, and every node's status said so", len(rep.Timeline))
	case bad == 0:
		b.finding("step %d: the bad plan was refused at submission, without a freeze (%s)", len(rep.Timeline), result)
	default:
		b.finding("step %d: the bad plan was stored as generation %d without a freeze", len(rep.Timeline), bad)
	}

	// 4. The enactor loops meet it.
	if bad > 0 {
		if err := b.enactorsMeet(ctx, bad); err != nil {
			return err
		}
		// 5. The operator reviews what changed.
		if err := b.review(ctx, good, bad); err != nil {
			return err
		}
	}

	// 6. Roll back to the generation served, then unfreeze.
	rb, err := b.operator.RollbackPlan(ctx, &pb.RollbackPlanRequest{ToGeneration: good, Reason: "the planner's source broke"})
	var rollback uint64
	if err != nil {
		result = "refused, " + errorText(err)
	} else {
		rollback = rb.GetGeneration()
		result = fmt.Sprintf("stored as generation %d: each endpoint's records of generation %d", rollback, good)
		if len(rb.GetKept()) > 0 {
			result += "; kept the current records of " + strings.Join(rb.GetKept(), ", ")
		}
	}
	if _, err := b.record(ctx, operatorID, fmt.Sprintf("ctl rollback --to %d (the generation served before the bad plan)", good), result); err != nil {
		return err
	}
	if _, err := b.operator.SetFreeze(ctx, &pb.SetFreezeRequest{Frozen: false}); err != nil {
		result = "refused, " + errorText(err)
	} else {
		result = "unfrozen: applies are allowed"
	}
	unfrozen := time.Now()
	if ev, err = b.record(ctx, operatorID, "ctl unfreeze", result); err != nil {
		return err
	}
	if ev.Detail, _, _, err = b.statuses(ctx); err != nil {
		return err
	}

	// 7. The enactor loops apply the rollback, the newest plan.
	if rollback == 0 {
		b.finding("not restored: there was no rollback plan to apply")
		return nil
	}
	took, served = b.waitServed(ctx, rollback, unfrozen, b.opts.RecoveryTimeout)
	result = fmt.Sprintf("generation %d not served everywhere within %s", rollback, b.opts.RecoveryTimeout)
	if served {
		if result, err = b.appliedBy(ctx); err != nil {
			return err
		}
		result += fmt.Sprintf("; every node served it within %s of the unfreeze", took)
	}
	if ev, err = b.record(ctx, delayedID+", "+otherID, fmt.Sprintf("the enactor loops apply the newest plan, generation %d", rollback), result); err != nil {
		return err
	}
	statuses, _, anyFrozen, err := b.statuses(ctx)
	if err != nil {
		return err
	}
	ev.Detail = statuses
	rep.Restored = served && !anyFrozen
	for _, a := range ev.DNS {
		if a.Generation < rollback || !healthyAnswer(a, rep.Healthy[a.Endpoint]) {
			rep.Restored = false
		}
	}
	if rep.Restored {
		b.finding("restored: every node serves every endpoint's healthy records at generation %d, within %s of the unfreeze, and no node is frozen",
			rollback, took)
	} else {
		b.finding("not restored: after the rollback and the unfreeze, not every node served generation %d's healthy records unfrozen", rollback)
	}
	return nil
}

// isDoubt reports whether a freeze reason is the cluster's own, on doubt.
func isDoubt(reason string) bool { return strings.HasPrefix(reason, "doubt:") }

// enactorsMeet waits until the enactor loops have met generation gen: two
// of their applies refused FROZEN, or gen served by every node, or some
// endpoint refused by a rule; and records what happened.
func (b *brokenRun) enactorsMeet(ctx context.Context, gen uint64) error {
	frozen := 0
	served, refused := false, false
	err := poll.Until(ctx, b.opts.StepTimeout, fmt.Sprintf("the enactor loops to meet generation %d", gen), func() bool {
		frozen = 0
		for _, l := range b.loops {
			frozen += l.count("dnsplan_enactor_applies_total", "frozen")
			refused = refused || l.count("dnsplan_enactor_applies_total", "refused") > 0
		}
		served = b.served(ctx, gen)
		return frozen >= 2 || served || refused
	})
	if err != nil {
		return err
	}
	var result string
	switch {
	case frozen > 0:
		// The cluster's side of the refusals: its audit history.
		h, err := b.cl.ListHistory(ctx, &pb.ListHistoryRequest{Limit: 100})
		if err != nil {
			return err
		}
		var who []string
		for _, e := range h.GetEvents() {
			if e.GetKindCode() == pb.HistoryKind_HISTORY_KIND_APPLY && e.GetGeneration() == gen && e.GetReasonCode() == string(contract.ReasonFrozen) &&
				!slices.Contains(who, e.GetActor()) {
				who = append(who, e.GetActor())
			}
		}
		result = fmt.Sprintf("ApplyPlan of generation %d by %s, the lease holder, refused %d times so far: FAILED_PRECONDITION, reason FROZEN; it retries, backing off",
			gen, cmp.Or(strings.Join(who, " then "), "?"), frozen)
		b.finding("step %d: the enactors' applies of generation %d were refused FROZEN (dnsplan_enactor_applies_total{outcome=\"frozen\"} %d)",
			len(b.report.Timeline)+1, gen, frozen)
	case served:
		result = fmt.Sprintf("APPLIED: every node serves generation %d", gen)
	default:
		result = fmt.Sprintf("some endpoints of generation %d REFUSED by a rule (dnsplan_enactor_applies_total{outcome=\"refused\"})", gen)
	}
	_, err = b.record(ctx, delayedID+", "+otherID, fmt.Sprintf("the enactor loops meet generation %d, the newest plan", gen), result)
	return err
}

// review is the operator's look at the frozen plan: the reason on the
// status (ctl status) and the diff of the plan served and the bad one
// (ctl diff), its changed endpoints as ctl diff prints them.
func (b *brokenRun) review(ctx context.Context, good, bad uint64) error {
	d, err := b.operator.DiffPlans(ctx, &pb.DiffPlansRequest{FromGeneration: good, ToGeneration: bad})
	if err != nil {
		return fmt.Errorf("%s: diff %d %d: %w", operatorID, good, bad, err)
	}
	st, err := b.operator.Status(ctx)
	if err != nil {
		return fmt.Errorf("%s: status: %w", operatorID, err)
	}
	var tw strings.Builder
	w := tabwriter.NewWriter(&tw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ENDPOINT\tCHANGE\tADDED\tREMOVED\tA\tRULES")
	unchanged := int(d.GetUnchanged()) // DiffPlans lists only the endpoints that change
	for _, e := range d.GetEndpoints() {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", e.GetEndpoint(), e.GetChange(), dash(strings.Join(e.GetAdded(), " ")),
			dash(strings.Join(e.GetRemoved(), " ")), percent(e.AChangePercent), rules(e.GetRules()))
	}
	w.Flush()
	detail := []string{"why frozen (ctl status): " + dash(st.GetFreezeReason())}
	detail = append(detail, strings.Split(strings.TrimSuffix(tw.String(), "\n"), "\n")...)
	changed := len(d.GetEndpoints())
	ev, err := b.record(ctx, operatorID, fmt.Sprintf("ctl status; ctl diff %d %d", good, bad),
		fmt.Sprintf("%d of %d endpoints changed, each to %s alone; %d unchanged (not shown)", changed, changed+unchanged, BadAddress, unchanged))
	if err != nil {
		return err
	}
	ev.Detail = detail
	return nil
}

// dash is s, or "-" for nothing, as ctl prints a table cell.
func dash(s string) string { return cmp.Or(s, "-") }

// percent prints a change of capacity as ctl diff does.
func percent(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%+.0f%%", *p)
}

// rules prints the rules a diff judged as ctl diff does.
func rules(checks []*pb.RuleCheck) string {
	if len(checks) == 0 {
		return "-"
	}
	var broken []string
	for _, r := range checks {
		if !r.GetOk() {
			broken = append(broken, r.GetReasonCode())
		}
	}
	if len(broken) > 0 {
		return "breaks " + strings.Join(broken, ",")
	}
	return "ok"
}

// startEnactors runs the fixed enactor loops az-a and az-b (Run, as
// `dnsplan enactor` does), each on a client of its own with an enactor
// certificate, until the returned function is called.
func (b *brokenRun) startEnactors(ctx context.Context) (stop func(), err error) {
	runCtx, cancel := context.WithCancel(ctx)
	var (
		wg      sync.WaitGroup
		closers []func()
	)
	stop = func() {
		cancel()
		wg.Wait()
		for _, c := range closers {
			c()
		}
	}
	for _, id := range []string{delayedID, otherID} {
		cl, closeClient, err := b.actorClient(id)
		if err != nil {
			stop()
			return nil, err
		}
		closers = append(closers, closeClient)
		l, err := b.newEnactor(id, false, cl)
		if err != nil {
			stop()
			return nil, err
		}
		b.loops = append(b.loops, l)
		// Each enactor runs as its own program would, until stop.
		wg.Go(func() { _ = l.e.Run(runCtx) })
	}
	return stop, nil
}

// waitServed waits, up to timeout, until every node's DNS answers every
// endpoint at generation gen or newer, with addresses; took is the time
// from since until it saw that.
func (b *brokenRun) waitServed(ctx context.Context, gen uint64, since time.Time, timeout time.Duration) (took time.Duration, ok bool) {
	err := poll.Until(ctx, timeout, fmt.Sprintf("generation %d served everywhere", gen), func() bool {
		return b.served(ctx, gen)
	})
	return time.Since(since).Round(time.Millisecond), err == nil
}

// served asks every node's DNS for every endpoint (judging the answers
// once the healthy plan is served) and reports whether all of them answer
// generation gen or newer, with addresses.
func (b *brokenRun) served(ctx context.Context, gen uint64) bool {
	ok := true
	for i, id := range b.c.ids {
		for _, name := range inventory {
			a := askDNS(ctx, id, b.c.dns[i], name)
			a.Endpoint = name
			if b.judging {
				b.watch.observe(a)
			}
			ok = ok && a.Generation >= gen && !a.Empty()
		}
	}
	return ok
}

// appliedBy says which enactor applied what the first endpoint serves,
// with which token.
func (b *brokenRun) appliedBy(ctx context.Context) (string, error) {
	a, err := b.cl.GetApplied(ctx, &pb.GetAppliedRequest{Endpoint: inventory[0]})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s applied generation %d (token %d)", a.GetEnactorId(), a.GetGeneration(), a.GetLeaseToken()), nil
}

// statuses is every node's freeze status (ctl status), a line for each
// group of nodes that say the same; all and anyFrozen tell whether every
// node, or some node, says frozen (on doubt, for all).
func (b *brokenRun) statuses(ctx context.Context) (lines []string, all, anyFrozen bool, err error) {
	all = true
	var says []string
	for _, addr := range b.c.grpc {
		st, err := b.cl.StatusOf(ctx, addr)
		if err != nil {
			return nil, false, false, fmt.Errorf("status of %s: %w", addr, err)
		}
		s := "not frozen"
		if st.GetFrozen() {
			s = "frozen: " + st.GetFreezeReason()
		}
		says = append(says, s)
		all = all && st.GetFrozen() && isDoubt(st.GetFreezeReason())
		anyFrozen = anyFrozen || st.GetFrozen()
	}
	return groupByNode(b.c.ids, says, "status "), all, anyFrozen, nil
}

// groupByNode prints, for nodes whose values are says, one line per
// distinct value naming the nodes that gave it, in the nodes' order.
func groupByNode(nodes, says []string, prefix string) []string {
	var order []string
	who := map[string][]string{}
	for i, s := range says {
		if _, ok := who[s]; !ok {
			order = append(order, s)
		}
		who[s] = append(who[s], nodes[i])
	}
	lines := make([]string, len(order))
	for i, s := range order {
		lines[i] = fmt.Sprintf("%s%s: %s", prefix, strings.Join(who[s], ","), s)
	}
	return lines
}

// record appends an event after waiting for every node's DNS to reflect
// the cluster's state for every endpoint, judging the answers; it returns
// the event, to which the caller may add detail before the next one.
func (b *brokenRun) record(ctx context.Context, actor, action, result string) (*Event, error) {
	at := time.Since(b.start)
	settled, err := b.settle(ctx, inventory...)
	if err != nil {
		return nil, fmt.Errorf("after %q: %w", action, err)
	}
	ev := Event{Offset: at, OffsetMS: at.Milliseconds(), Actor: actor, Action: action, Result: result}
	for e, name := range inventory {
		for _, a := range settled[e] {
			a.Endpoint = name
			ev.DNS = append(ev.DNS, a)
			if b.judging {
				b.watch.observe(a)
			}
		}
	}
	b.report.Timeline = append(b.report.Timeline, ev)
	b.log.Info("step", "step", len(b.report.Timeline), "actor", actor, "action", action, "result", result)
	return &b.report.Timeline[len(b.report.Timeline)-1], nil
}

// finding adds a line to the findings.
func (b *brokenRun) finding(format string, args ...any) {
	b.report.Findings = append(b.report.Findings, fmt.Sprintf(format, args...))
}

// summarize turns the observations into the verdict.
func (b *brokenRun) summarize(s probe.Summary) {
	rep := b.report
	rep.Checker = checkerSummary(s)
	w := b.watch.result()
	rep.Answers, rep.Unanswered = w.answers, w.unanswered
	rep.BadAddressServed = w.bad > 0
	rep.OldRecordsServed = w.wrong == 0 && rep.Checker.I2 == 0
	if w.wrong == 0 {
		b.finding("every one of %d DNS answers judged was its endpoint's healthy records (%d queries unanswered, not counted)", w.answers, w.unanswered)
	} else {
		b.finding("%d of %d DNS answers judged were not their endpoint's healthy records, %d of them with %s; the first: %s",
			w.wrong, w.answers, w.bad, BadAddress, strings.Join(w.first, "; "))
	}
	if rep.Checker.I2 > 0 {
		b.finding("the checker saw %d I2 violations (no addresses after addresses)", rep.Checker.I2)
	}
	if rep.Checker.I1 > 0 {
		b.finding("the checker saw %d I1 violations (a generation went back)", rep.Checker.I1)
	}
	rep.AsExpected = rep.BrokenPlannerVerdict == rep.Expected
}

// answerWatch judges DNS answers against each endpoint's healthy records:
// the answers the script sees, and those of its own rounds between the
// steps, so that a wrong answer lasting less than a step is seen too.
type answerWatch struct {
	healthy map[string][]string

	// mu guards counts: the watch's goroutine and the script both judge.
	mu     sync.Mutex
	counts watchCounts
}

// watchCounts is what an answerWatch judged: answers, the queries that
// got none, the answers that were not the healthy records, those with
// BadAddress, and the first few wrong ones.
type watchCounts struct {
	answers, unanswered, wrong, bad int
	first                           []string
}

// observe judges one answer, whose Endpoint is set.
func (w *answerWatch) observe(a Answer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if a.Rcode == dns.RcodeToString[dns.RcodeServerFailure] || strings.HasPrefix(a.Rcode, "error:") {
		// Unavailability, not an answer: a resolver asks another node.
		w.counts.unanswered++
		return
	}
	w.counts.answers++
	if healthyAnswer(a, w.healthy[a.Endpoint]) {
		return
	}
	w.counts.wrong++
	if slices.Contains(a.Addresses, BadAddress) {
		w.counts.bad++
	}
	if len(w.counts.first) < 3 {
		w.counts.first = append(w.counts.first, fmt.Sprintf("%s %s: %s", a.Node, a.Endpoint, a))
	}
}

// healthyAnswer reports whether a is exactly the healthy records.
func healthyAnswer(a Answer, healthy []string) bool {
	return a.Rcode == dns.RcodeToString[dns.RcodeSuccess] && slices.Equal(a.Addresses, healthy)
}

// start asks every node's DNS for every endpoint, round after round, until
// the returned function is called.
func (w *answerWatch) start(ctx context.Context, s *stage) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// The watch runs beside the script from the healthy plan on; stop
	// ends it.
	wg.Go(func() {
		for {
			for i, id := range s.c.ids {
				for _, name := range inventory {
					a := askDNS(ctx, id, s.c.dns[i], name)
					if ctx.Err() != nil {
						return
					}
					a.Endpoint = name
					w.observe(a)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(watchInterval):
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// result is what the watch has judged so far.
func (w *answerWatch) result() watchCounts {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.counts
	c.first = slices.Clone(c.first)
	return c
}
