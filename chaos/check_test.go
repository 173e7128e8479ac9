package chaos

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

const ep = "api.dnsplan.test."

func ms(n int64) int64 { return n * int64(time.Millisecond) }

// The checker can fail: porcupine finds a regression in a synthetic
// history, and accepts the histories a correct register produces.
func TestLinearizabilityModel(t *testing.T) {
	read := func(actor string, call, ret int64, out uint64) Op {
		return Op{Endpoint: ep, Kind: "read", Actor: actor, Out: out, Known: true, Call: ms(call), Return: ms(ret)}
	}
	apply := func(kind, actor string, call, ret int64, gen, out uint64) Op {
		return Op{Endpoint: ep, Kind: kind, Actor: actor, Gen: gen, Out: out, Known: true, Applied: out == gen, Call: ms(call), Return: ms(ret)}
	}
	unknown := func(actor string, call int64, gen uint64) Op {
		return Op{Endpoint: ep, Kind: "apply", Actor: actor, Gen: gen, Call: ms(call), Return: Unknown}
	}
	tests := []struct {
		name    string
		ops     []Op
		illegal bool
		culprit string // the actor of the operation reported
	}{
		{name: "empty", ops: nil},
		{name: "applies and reads in order", ops: []Op{
			read("r", 0, 1, 0), apply("apply", "az-a", 2, 3, 5, 5), read("r", 4, 5, 5),
			apply("apply", "az-b", 6, 7, 3, 5), read("r", 8, 9, 5),
		}},
		{name: "a read concurrent with the apply may see either value", ops: []Op{
			apply("apply", "az-a", 0, 10, 5, 5), read("r1", 1, 2, 0), read("r2", 3, 4, 5), read("r1", 11, 12, 5),
		}},
		{name: "an unknown apply may land any time after its call", ops: []Op{
			unknown("az-a", 0, 7), read("r", 1, 2, 0), read("r", 50, 51, 7), read("r", 60, 61, 7),
		}},
		{name: "an unknown apply never called before the read cannot explain it", illegal: true, culprit: "r", ops: []Op{
			read("r", 0, 1, 7), unknown("az-a", 2, 7),
		}},
		{name: "a read goes back", illegal: true, culprit: "r", ops: []Op{
			apply("apply", "az-a", 0, 1, 5, 5), read("r", 2, 3, 5), apply("apply", "az-b", 4, 5, 6, 6), read("r", 6, 7, 5),
		}},
		{name: "the legacy write of an older generation is acknowledged", illegal: true, culprit: "az-a", ops: []Op{
			apply("legacy_apply", "az-b", 0, 1, 24, 24), read("r", 2, 3, 24), apply("legacy_apply", "az-a", 4, 5, 22, 22),
		}},
		{name: "a stale apply reports an older generation than was read", illegal: true, culprit: "az-a", ops: []Op{
			apply("apply", "az-b", 0, 1, 9, 9), read("r", 2, 3, 9), apply("apply", "az-a", 4, 5, 3, 4),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lin := checkLinearizable(tt.ops, 10*time.Second)
			want := porcupine.Ok
			if tt.illegal {
				want = porcupine.Illegal
			}
			if lin.Result != want {
				t.Fatalf("result %s, want %s", lin.Result, want)
			}
			if !tt.illegal {
				if len(lin.Violations) != 0 {
					t.Fatalf("violations on a legal history: %v", lin.Violations)
				}
				return
			}
			if len(lin.Violations) != 1 || lin.Violations[0].Invariant != "I1" || lin.Violations[0].Endpoint != ep {
				t.Fatalf("violations %v, want one I1 on %s", lin.Violations, ep)
			}
			if got := lin.Culprits[ep].Actor; got != tt.culprit {
				t.Errorf("culprit %s (%s), want an operation of %s", got, lin.Culprits[ep], tt.culprit)
			}
			path := filepath.Join(t.TempDir(), "history.html")
			if err := lin.visualize(path, []Event{{At: ms(2), Kind: string(KillLeader)}}); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
				t.Fatalf("visualization not written: %v", err)
			}
		})
	}
}

// Endpoints are independent registers: a regression on one is reported on
// that one only.
func TestLinearizabilityPartitionsByEndpoint(t *testing.T) {
	other := "api-v6.dnsplan.test."
	ops := []Op{
		{Endpoint: other, Kind: "apply", Actor: "az-a", Gen: 9, Out: 9, Known: true, Call: 0, Return: ms(1)},
		{Endpoint: ep, Kind: "apply", Actor: "az-a", Gen: 3, Out: 3, Known: true, Call: ms(2), Return: ms(3)},
		{Endpoint: other, Kind: "read", Actor: "r", Out: 9, Known: true, Call: ms(4), Return: ms(5)},
		{Endpoint: ep, Kind: "read", Actor: "r", Out: 3, Known: true, Call: ms(4), Return: ms(5)},
		{Endpoint: other, Kind: "read", Actor: "r", Out: 8, Known: true, Call: ms(6), Return: ms(7)},
	}
	lin := checkLinearizable(ops, 10*time.Second)
	if lin.Result != porcupine.Illegal || len(lin.Violations) != 1 || lin.Violations[0].Endpoint != other {
		t.Fatalf("result %s, violations %v; want one on %s", lin.Result, lin.Violations, other)
	}
}

func TestReduceUnknown(t *testing.T) {
	u := func(actor string, call int64, gen uint64, token uint64) Op {
		return Op{Endpoint: ep, Kind: "apply", Actor: actor, Gen: gen, Token: token, Call: ms(call), Return: Unknown}
	}
	ops := []Op{
		u("az-a", 3, 5, 7), u("az-a", 1, 5, 7), u("az-a", 2, 5, 7), // retries of one request
		u("az-b", 4, 6, 9), // took effect, as the audit shows
		{Endpoint: ep, Kind: "read", Actor: "r", Out: 6, Known: true, Call: ms(10), Return: ms(11)},
	}
	audit := []AuditEvent{{Index: 20, Kind: kindApply, Actor: "az-b", Generation: 6, Endpoint: ep, Token: 9, Outcome: outcomeApplied}}

	got, dropped := reduceUnknown(ops, audit, false)
	if dropped != 2 || len(got) != 3 {
		t.Fatalf("without the audit: kept %v, dropped %d; want the earliest retry, az-b's apply and the read", got, dropped)
	}
	if got[0].Call != ms(1) {
		t.Errorf("kept the retry called at %s, want the earliest", fmtNanos(got[0].Call))
	}
	got, dropped = reduceUnknown(ops, audit, true)
	if dropped != 3 || len(got) != 2 || got[0].Actor != "az-b" {
		t.Fatalf("with the audit: kept %v, dropped %d; want az-b's apply and the read", got, dropped)
	}
	if lin := checkLinearizable(got, 10*time.Second); lin.Result != porcupine.Ok {
		t.Fatalf("reduced history is %s", lin.Result)
	}
}

func TestSchedule(t *testing.T) {
	const d = 30 * time.Second
	a := schedule(7, d, time.Second, DefaultMix)
	if b := schedule(7, d, time.Second, DefaultMix); !slices.Equal(a, b) {
		t.Fatalf("same seed, different schedules:\n%v\n%v", a, b)
	}
	if c := schedule(8, d, time.Second, DefaultMix); slices.Equal(a, c) {
		t.Fatalf("seeds 7 and 8 gave the same schedule %v", a)
	}
	if len(a) < 5 {
		t.Fatalf("only %d faults in %s: %v", len(a), d, a)
	}
	kinds := map[FaultKind]bool{}
	for seed := range uint64(20) {
		prevEnd := time.Duration(0)
		for _, f := range schedule(seed, d, time.Second, DefaultMix) {
			kinds[f.Kind] = true
			if f.At < prevEnd || f.At < warmup {
				t.Errorf("seed %d: %s starts before the previous fault is healed (%s) or during warm-up", seed, f, prevEnd)
			}
			if f.At+f.For > d-quietTail {
				t.Errorf("seed %d: %s is not healed before the end", seed, f)
			}
			if prevEnd == 0 && f.Kind != FreezeEnactor && f.Kind != SlowEnactor {
				t.Errorf("seed %d: the first fault is %s, not a delayed enactor", seed, f)
			}
			if f.Kind == FreezeEnactor && f.For < 2*time.Second {
				t.Errorf("seed %d: %s is not well past the lease TTL", seed, f)
			}
			prevEnd = f.At + f.For
		}
	}
	for _, k := range FaultKinds {
		if !kinds[k] {
			t.Errorf("no %s in 20 seeds", k)
		}
	}
	only, err := ParseFaults("partition,kill-leader")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range schedule(1, d, time.Second, only) {
		if f.Kind != Partition && f.Kind != KillLeader {
			t.Errorf("fault %s outside the mix", f)
		}
	}
	if _, err := ParseFaults("meteor"); err == nil {
		t.Error("unknown fault accepted")
	}
}

func TestNetworkPartition(t *testing.T) {
	var addrs []string
	accepted := make(chan net.Conn, 16)
	for range 3 {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lis.Close() })
		addrs = append(addrs, lis.Addr().String())
		go func() {
			for {
				c, err := lis.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
	}
	nw := NewNetwork(addrs)
	c01, err := nw.Dialer(0)(addrs[1], time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c21, err := nw.Dialer(2)(addrs[1], time.Second)
	if err != nil {
		t.Fatal(err)
	}
	in01 := <-accepted
	<-accepted
	if nw.open(0, 1) != 1 || nw.open(1, 2) != 1 {
		t.Fatalf("tracked %d and %d connections, want 1 and 1", nw.open(0, 1), nw.open(1, 2))
	}

	nw.Isolate(1)
	if !nw.Cut(0, 1) || !nw.Cut(1, 2) || nw.Cut(0, 2) {
		t.Fatal("isolating node 1 cut the wrong links")
	}
	if _, err := c01.Write([]byte("x")); err == nil {
		t.Error("a connection across the cut still writes")
	}
	if _, err := c21.Write([]byte("x")); err == nil {
		t.Error("a connection across the cut still writes")
	}
	// The accepting side sees its peer's close.
	_ = in01.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := in01.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the accepted side reads %v, want EOF", err)
	}
	for _, from := range []int{0, 2} {
		if _, err := nw.Dialer(from)(addrs[1], time.Second); err == nil || !strings.Contains(err.Error(), "cut") {
			t.Errorf("dial %d→1 across the cut: %v", from, err)
		}
	}
	if _, err := nw.Dialer(1)(addrs[0], time.Second); err == nil {
		t.Error("dial 1→0 across the cut succeeded")
	}
	c02, err := nw.Dialer(0)(addrs[2], time.Second)
	if err != nil {
		t.Fatalf("dial 0→2, not cut: %v", err)
	}
	c02.Close()
	if nw.open(0, 2) != 0 {
		t.Error("a closed connection is still tracked")
	}

	nw.Heal()
	c, err := nw.Dialer(1)(addrs[0], time.Second)
	if err != nil {
		t.Fatalf("dial after healing: %v", err)
	}
	c.Close()
}

func TestCheckFencing(t *testing.T) {
	acquire := func(index uint64, holder string) AuditEvent {
		return AuditEvent{Index: index, Kind: kindAcquire, Actor: holder, LeaseName: "enactor/0", Token: index, Outcome: outcomeAccepted}
	}
	apply := func(index uint64, actor string, token uint64, outcome string) AuditEvent {
		return AuditEvent{Index: index, Kind: kindApply, Actor: actor, LeaseName: "enactor/0", Token: token, Generation: 3, Endpoint: ep, Outcome: contract.ParseOutcome(outcome)}
	}
	tests := []struct {
		name   string
		events []AuditEvent
		want   int // violations
		judged int
	}{
		{name: "current token", events: []AuditEvent{acquire(5, "az-a"), apply(6, "az-a", 5, "applied"), apply(7, "az-a", 5, "stale")}, judged: 2},
		{name: "superseded token refused", events: []AuditEvent{acquire(5, "az-a"), acquire(9, "az-b"), apply(10, "az-a", 5, "rejected")}},
		{name: "superseded token accepted", events: []AuditEvent{acquire(5, "az-a"), acquire(9, "az-b"), apply(10, "az-a", 5, "applied")}, want: 1, judged: 1},
		{name: "current token, wrong holder", events: []AuditEvent{acquire(5, "az-a"), apply(6, "az-b", 5, "applied")}, want: 1, judged: 1},
		{name: "after release", events: []AuditEvent{
			acquire(5, "az-a"), {Index: 6, Kind: kindRelease, Actor: "az-a", LeaseName: "enactor/0", Token: 5, Outcome: outcomeAccepted}, apply(7, "az-a", 5, "applied"),
		}, want: 1, judged: 1},
		{name: "never granted", events: []AuditEvent{apply(7, "az-a", 5, "applied")}, want: 1},
		{name: "not judged across a gap", events: []AuditEvent{acquire(5, "az-a"), func() AuditEvent { e := apply(2000, "az-b", 1500, "applied"); e.Gap = true; return e }()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, judged := checkFencing(tt.events)
			if len(v) != tt.want || judged != tt.judged {
				t.Fatalf("violations %v, judged %d; want %d and %d", v, judged, tt.want, tt.judged)
			}
			for _, x := range v {
				if x.Invariant != "I4" {
					t.Errorf("violation of %s, want I4", x.Invariant)
				}
			}
		})
	}
}

// D1: an endpoint made to serve a held generation is a violation, by an
// apply or a legacy apply; refusals of it, and applies of other
// generations, are not.
func TestCheckHeld(t *testing.T) {
	ev := func(kind pb.HistoryKind, gen uint64, outcome string) AuditEvent {
		return AuditEvent{Index: 10, Kind: kind, Actor: "az-a", Generation: gen, Endpoint: ep, Outcome: contract.ParseOutcome(outcome)}
	}
	held := map[uint64]bool{5: true}
	events := []AuditEvent{
		ev(kindApply, 5, "rejected"), ev(kindApply, 6, "applied"), ev(kindSubmit, 5, "accepted"),
		ev(kindApply, 5, "applied"), ev(kindLegacyApply, 5, "applied"),
	}
	v := checkHeld(events, held)
	if len(v) != 2 || v[0].Invariant != "D1" || v[1].Invariant != "D1" {
		t.Fatalf("violations %v, want two of D1", v)
	}
	if v := checkHeld(events, nil); len(v) != 0 {
		t.Fatalf("nothing held: violations %v", v)
	}
}

func TestCheckPlansKept(t *testing.T) {
	events := []AuditEvent{
		{Index: 10, Kind: kindSubmit, Generation: 1, Outcome: outcomeAccepted},
		{Index: 11, Kind: kindSubmit, Generation: 2, Outcome: outcomeAccepted},
		{Index: 12, Kind: kindCleanup, Outcome: outcomeDeleted},
		{Index: 13, Kind: kindSubmit, Generation: 3, Outcome: outcomeAccepted},
	}
	acked := map[uint64]int64{1: 1, 2: 2, 3: 3}
	if v := checkPlansKept(acked, map[uint64]bool{3: true}, events); len(v) != 0 {
		t.Fatalf("plans deleted by a recorded clean-up reported: %v", v)
	}
	v := checkPlansKept(acked, map[uint64]bool{1: true, 2: true}, events)
	if len(v) != 1 || v[0].Invariant != "I5" || !strings.Contains(v[0].Detail, "plan 3") {
		t.Fatalf("plan 3 lost without a clean-up: got %v", v)
	}
}

func TestTallyAndReport(t *testing.T) {
	v := Violation{Invariant: "I2", Source: "dns", Node: "n1", Endpoint: ep, Detail: "empty answer", At: ms(1200)}
	caught := &Report{Design: contract.Legacy, Seed: 3, Duration: 15 * time.Second, Violations: []Violation{v},
		events: []Event{{At: ms(1000), Kind: string(FreezeEnactor), Actor: "az-a"}, {At: ms(5000), Kind: "heal", Actor: "az-a"}},
		ops: []Op{
			{Endpoint: ep, Kind: "read", Actor: "r", Out: 4, Known: true, Call: ms(900), Return: ms(901)},
			{Endpoint: ep, Kind: "legacy_apply", Actor: "az-a", Gen: 2, Out: 2, Known: true, Call: ms(1100), Return: ms(1101)},
			{Endpoint: ep, Kind: "apply", Actor: "az-b", Gen: 5, Call: ms(1150), Return: Unknown},
			{Endpoint: ep, Kind: "apply", Actor: "az-b", Gen: 5, Call: ms(1160), Return: Unknown},
		}}
	var tally Tally
	tally.Add(contract.Fixed, &Report{Design: contract.Fixed}, nil)
	tally.Add(contract.Legacy, caught, nil)
	tally.Add(contract.Legacy, nil, errors.New("no cluster"))
	if c, n := tally.Caught(contract.Legacy); c != 1 || n != 2 || tally.Errors(contract.Legacy) != 1 {
		t.Fatalf("legacy: caught %d of %d, %d errors", c, n, tally.Errors(contract.Legacy))
	}
	var b strings.Builder
	tally.Print(&b)
	for _, want := range []string{"design", "I5", "fixed", "legacy", "1.2s"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	caught.Print(&b)
	out := b.String()
	for _, want := range []string{"VIOLATION I2×1", "--design legacy --seed 3", "freeze-enactor", "legacy_apply(2) → 2", "(sent 2 times)", ">>> +1.200s I2 violated here"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "heal") {
		t.Errorf("report shows an event outside the window:\n%s", out)
	}
}
