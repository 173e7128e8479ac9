package contract

import (
	"errors"
	"strings"
	"testing"
	"time"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in     string
		ok, v4 bool
	}{
		{"192.0.2.10", true, true},
		{"198.51.100.255", true, true},
		{"2001:db8::1", true, false},
		{"2001:DB8::1", true, false},
		{"::1", true, false},
		{"127.0.0.1", true, true},
		{"::ffff:192.0.2.10", false, false},
		{"fe80::1%eth0", false, false},
		{"0.0.0.0", false, false},
		{"::", false, false},
		{"", false, false},
		{"host.example.", false, false},
		{"192.0.2.10:53", false, false},
	}
	for _, tc := range tests {
		a, err := ParseAddress(tc.in)
		if tc.ok != (err == nil) {
			t.Errorf("ParseAddress(%q) = %v, %v; want ok=%v", tc.in, a, err, tc.ok)
			continue
		}
		if tc.ok && a.Is4() != tc.v4 {
			t.Errorf("ParseAddress(%q) = %v, Is4 %v, want %v", tc.in, a, a.Is4(), tc.v4)
		}
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"api.dnsplan.test.", true},
		{"a.", true},
		{"A-1_b.x.", true},
		{"xn--bcher-kva.test.", true},
		{"1.2.3.4.in-addr.arpa.", true},
		{"api.dnsplan.test", false},
		{".", false},
		{"", false},
		{"..", false},
		{".api.", false},
		{"a-.b.", false},
		{"-a.b.", false},
		{"a/b.", false},
		{"a\x00b.", false},
	}
	for _, tc := range tests {
		if err := ValidateName(tc.in); tc.ok != (err == nil) {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestCanonicalName(t *testing.T) {
	if got := CanonicalName("API.DnsPlan.TEST."); got != "api.dnsplan.test." {
		t.Fatalf("CanonicalName = %q", got)
	}
}

func TestValidateLeaseRequest(t *testing.T) {
	tests := []struct {
		name, holder string
		ttl          time.Duration
		ok           bool
	}{
		{"enactor", "enactor-a", 3 * time.Second, true},
		{"enactor", "enactor-a", MinLeaseTTL, true},
		{"enactor", "enactor-a", MaxLeaseTTL, true},
		{"enactor", "enactor-a", MinLeaseTTL - 1, false},
		{"enactor", "enactor-a", MaxLeaseTTL + 1, false},
		{"enactor", "enactor-a", 0, false},
		{"enactor", "enactor-a", -time.Second, false},
		{"", "enactor-a", time.Second, false},
		{"enactor", "", time.Second, false},
		{strings.Repeat("n", MaxIDLength), "enactor-a", time.Second, true},
		{strings.Repeat("n", MaxIDLength+1), "enactor-a", time.Second, false},
		{"enactor", strings.Repeat("h", MaxIDLength+1), time.Second, false},
	}
	for _, tc := range tests {
		err := ValidateLeaseRequest(tc.name, tc.holder, tc.ttl)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("ValidateLeaseRequest(%q, %q, %v) = %v, want ok=%v", tc.name, tc.holder, tc.ttl, err, tc.ok)
		}
	}
}

func TestValidateApplyRequest(t *testing.T) {
	ok := func() *pb.ApplyPlanRequest {
		return &pb.ApplyPlanRequest{Generation: 1, LeaseName: "enactor", LeaseToken: 1, EnactorId: "enactor-a"}
	}
	tests := []struct {
		name  string
		edit  func(*pb.ApplyPlanRequest)
		valid bool
	}{
		{"valid", func(*pb.ApplyPlanRequest) {}, true},
		{"named endpoints", func(r *pb.ApplyPlanRequest) { r.Endpoints = []string{"api.dnsplan.test.", "API.X."} }, true},
		{"no generation", func(r *pb.ApplyPlanRequest) { r.Generation = 0 }, false},
		{"no token", func(r *pb.ApplyPlanRequest) { r.LeaseToken = 0 }, false},
		{"no lease name", func(r *pb.ApplyPlanRequest) { r.LeaseName = "" }, false},
		{"long lease name", func(r *pb.ApplyPlanRequest) { r.LeaseName = strings.Repeat("l", MaxIDLength+1) }, false},
		{"no enactor", func(r *pb.ApplyPlanRequest) { r.EnactorId = "" }, false},
		{"long enactor", func(r *pb.ApplyPlanRequest) { r.EnactorId = strings.Repeat("e", MaxIDLength+1) }, false},
		{"bad endpoint name", func(r *pb.ApplyPlanRequest) { r.Endpoints = []string{"api.dnsplan.test"} }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ok()
			tc.edit(r)
			err := ValidateApplyRequest(r)
			if tc.valid != (err == nil) || (err != nil && !errors.Is(err, ErrInvalid)) {
				t.Fatalf("ValidateApplyRequest = %v, want valid=%v", err, tc.valid)
			}
		})
	}
}
