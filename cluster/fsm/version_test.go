package fsm

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
)

// Until a log version is active, the state machine does what a replica of
// the version before it does: the new fields are ignored, no new state is
// kept, events record nothing new. From the ActivateLog entry on, every
// replica applies the new rules.
func TestRulesWaitForTheActiveVersion(t *testing.T) {
	h := newHarness(t)
	h.s.logVersion = 0
	h.caller = "planner/p1"
	l := h.mustAcquire("enactor/0", "az-a", time.Hour)
	p := plan(endpoint(api, target("a", "192.0.2.1", 1), target("b", "192.0.2.2", 1)))
	p.Endpoints[0].MinHealthyTargets = 2
	g1 := h.mustSubmit(p)
	h.mustApply(g1, l.Name, l.Token, "az-a")
	// Below its minimum, with a parent that is not the newest: both are
	// fields an older replica ignores.
	below := plan(endpoint(api, target("a", "192.0.2.1", 1), target("b", "192.0.2.2", 0)))
	below.Endpoints[0].MinHealthyTargets = 2
	r := h.do(&statev1.SubmitPlan{Plan: below, ExpectedParent: proto.Uint64(99)})
	if r.Err != nil {
		t.Fatalf("before activation: %v; an older replica stores this plan", r.Err)
	}
	h.mustApply(r.Generation, l.Name, l.Token, "az-a")
	stored := h.s.Plan(r.Generation)
	if stored.Digest != "" || stored.Endpoints[0].MinHealthyTargets != 0 || len(h.s.Previous(api)) != 0 {
		t.Errorf("before activation: digest %q, minimum %d, %d records kept", stored.Digest, stored.Endpoints[0].MinHealthyTargets, len(h.s.Previous(api)))
	}
	for _, ev := range h.s.History(0) {
		if ev.Caller != "" || ev.Diff != nil {
			t.Errorf("before activation an event records caller %q, diff %v", ev.Caller, ev.Diff)
		}
	}
	// Activation raises the version once; it never goes down.
	h.do(&statev1.ActivateLog{Version: LogVersion})
	h.do(&statev1.ActivateLog{Version: 1})
	if h.s.LogVersion() != LogVersion {
		t.Fatalf("active version %d, want %d", h.s.LogVersion(), LogVersion)
	}
	if r := h.do(&statev1.SubmitPlan{Plan: below, ExpectedParent: proto.Uint64(99)}); !errors.Is(r.Err, ErrParentMoved) {
		t.Errorf("after activation, a moved parent: %v", r.Err)
	}
	if r := h.do(&statev1.SubmitPlan{Plan: below}); !errors.Is(r.Err, ErrMinHealthy) {
		t.Errorf("after activation, below the minimum: %v", r.Err)
	}
	// A snapshot keeps the active version.
	b, err := h.s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if r, err := Restore(b); err != nil || r.LogVersion() != LogVersion {
		t.Fatalf("restored at version %d (%v)", r.LogVersion(), err)
	}
	// A snapshot of a newer version is refused, as its ActivateLog is: a
	// node that joins through it would apply rules it lacks.
	h.s.logVersion = LogVersion + 1
	if b, err = h.s.Marshal(); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(b); err == nil || !strings.Contains(err.Error(), "upgrade this node") {
		t.Fatalf("a snapshot at log version %d restored: %v", LogVersion+1, err)
	}
}

// A version above this binary's is undecodable: the node stops rather
// than apply rules it lacks.
func TestActivateNewerVersionStops(t *testing.T) {
	b, err := Command{Stamp: t0, Payload: &statev1.ActivateLog{Version: LogVersion + 1}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(b); !errors.Is(err, ErrUndecodable) {
		t.Fatalf("Decode of log version %d: %v, want ErrUndecodable", LogVersion+1, err)
	}
}

// MembersKnow counts every member named, registered or not.
func TestMembersKnow(t *testing.T) {
	h := newHarness(t)
	ids := []string{"n1", "n2"}
	h.do(&statev1.SetMember{Id: "n1", RaftAddr: "127.0.0.1:7001", GrpcAddr: "127.0.0.1:9001", LogVersion: LogVersion})
	if h.s.MembersKnow(LogVersion, ids) {
		t.Fatal("n2 has not registered, yet it is said to know the version")
	}
	h.do(&statev1.SetMember{Id: "n2", RaftAddr: "127.0.0.1:7002", GrpcAddr: "127.0.0.1:9002"}) // an older version
	if h.s.MembersKnow(1, ids) {
		t.Fatal("n2 registered no version, yet it is said to know version 1")
	}
	h.do(&statev1.SetMember{Id: "n2", RaftAddr: "127.0.0.1:7002", GrpcAddr: "127.0.0.1:9002", LogVersion: LogVersion})
	if !h.s.MembersKnow(LogVersion, ids) || h.s.MembersKnow(LogVersion, nil) {
		t.Fatal("every member knows the version (and no members know nothing)")
	}
}
