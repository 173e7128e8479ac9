package fsm

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/dnsplan/dnsplan/contract"
	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
)

// expected_parent is a compare-and-set on the plan chain: submitters each
// read the newest generation, review, and submit expecting it, in any
// interleaving (with clean-ups and unconditional submissions between).
// Exactly the submissions whose expectation is still the newest plan are
// stored, each as the direct child of what its submitter read; every
// other is PARENT_MOVED and stores nothing.
func TestExpectedParentIsCompareAndSet(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		// The harness's own failures (a plain submission refused) cannot
		// happen here; rt judges the property.
		h := newHarness(t)
		newest := uint64(0) // the model: the newest stored generation
		read := map[int]uint64{}
		for range rapid.IntRange(1, 60).Draw(rt, "steps") {
			who := rapid.IntRange(0, 3).Draw(rt, "submitter")
			switch rapid.IntRange(0, 4).Draw(rt, "op") {
			case 0, 1:
				read[who] = h.s.NewestGeneration()
				if read[who] != newest {
					rt.Fatalf("MODEL: newest generation %d, model %d", read[who], newest)
				}
			case 2:
				expect, ok := read[who]
				if !ok {
					continue
				}
				before := h.s.NextGeneration()
				r := h.do(&statev1.SubmitPlan{Plan: validPlan(), ExpectedParent: proto.Uint64(expect)})
				switch {
				case expect == newest && r.Err != nil:
					rt.Fatalf("CAS: submission expecting the newest plan %d refused: %v", expect, r.Err)
				case expect == newest && r.Generation != expect+1:
					rt.Fatalf("CAS: stored as %d, not the child of %d", r.Generation, expect)
				case expect != newest && !errors.Is(r.Err, ErrParentMoved):
					rt.Fatalf("CAS: submission expecting %d while the newest is %d: %v, want PARENT_MOVED", expect, newest, r.Err)
				case expect != newest && h.s.NextGeneration() != before:
					rt.Fatal("CAS: a refused submission used a generation")
				}
				if r.Err == nil {
					newest = r.Generation
				}
			case 3:
				newest = h.mustSubmit(validPlan())
			case 4:
				h.cleanup(1)
			}
		}
	})
}

func TestExpectedDigest(t *testing.T) {
	h := newHarness(t)
	p := validPlan()
	d := contract.PlanDigest(p)
	other := validPlan()
	other.Endpoints[0].Targets[0].Weight++
	if r := h.do(&statev1.SubmitPlan{Plan: other, ExpectedDigest: d}); !errors.Is(r.Err, ErrDigest) || Reason(r.Err) != contract.ReasonDigest {
		t.Fatalf("a plan other than the reviewed one: %v, want DIGEST", r.Err)
	}
	if h.s.NextGeneration() != 1 {
		t.Fatal("the refused plan used a generation")
	}
	if r := h.do(&statev1.SubmitPlan{Plan: p, ExpectedDigest: d}); r.Err != nil || r.Generation != 1 {
		t.Fatalf("the reviewed plan: %v", r.Err)
	}
	ev := h.s.History(0)
	if first := ev[0]; first.ReasonCode != "DIGEST" || first.OutcomeCode != outcomeRejected {
		t.Errorf("refusal recorded as %v", first)
	}
	if err := Validate(&statev1.SubmitPlan{Plan: p, ExpectedDigest: "sha256:" + fmt.Sprint(42)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a malformed digest: %v, want INVALID", err)
	}
}
