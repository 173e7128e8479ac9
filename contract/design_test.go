package contract

import (
	"slices"
	"testing"
)

func TestParseDesigns(t *testing.T) {
	for _, tc := range []struct {
		in   string
		both []Design
		want []Design
		ok   bool
	}{
		{"both", nil, []Design{Fixed, Legacy}, true},
		{"both", []Design{Legacy, Fixed}, []Design{Legacy, Fixed}, true},
		{"legacy", nil, []Design{Legacy}, true},
		{"fixed", []Design{Legacy, Fixed}, []Design{Fixed}, true},
		{"", nil, nil, false},
		{"Legacy", nil, nil, false},
		{"unspecified", nil, nil, false},
	} {
		got, err := ParseDesigns(tc.in, tc.both...)
		if (err == nil) != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("ParseDesigns(%q, %v) = %v, %v", tc.in, tc.both, got, err)
		}
	}
}

// A design survives the wire both ways; anything else is unspecified.
func TestDesignProto(t *testing.T) {
	for _, d := range []Design{Fixed, Legacy} {
		if got := DesignOf(d.Proto()); got != d {
			t.Errorf("DesignOf(%v.Proto()) = %q", d, got)
		}
	}
	if p := Design("both").Proto(); p != 0 {
		t.Errorf("Design(both).Proto() = %v, want unspecified", p)
	}
}
