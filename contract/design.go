package contract

import (
	"fmt"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Design is a cluster's design, in the words flags, reports and messages
// use: fixed (dnsplan's rules) or legacy (the rules that failed at AWS,
// kept to show the failure). A cluster's design is chosen when it is
// founded and never changes (docs/DESIGN.md); on the wire it is pb.Design.
type Design string

// The designs.
const (
	// Fixed is dnsplan's design: fenced leases, the generation checked in
	// the same step as the write, materialized records, a clean-up that
	// keeps every applied plan.
	Fixed Design = "fixed"
	// Legacy is the design that failed at AWS: a one-time check, then
	// unconditional writes endpoint by endpoint, and an age-based clean-up.
	Legacy Design = "legacy"
)

// ParseDesign reads a design's name: fixed or legacy.
func ParseDesign(s string) (Design, error) {
	switch d := Design(s); d {
	case Fixed, Legacy:
		return d, nil
	}
	return "", fmt.Errorf("design %q is not fixed or legacy", s)
}

// Proto is the design on the wire.
func (d Design) Proto() pb.Design {
	switch d {
	case Fixed:
		return pb.Design_DESIGN_FIXED
	case Legacy:
		return pb.Design_DESIGN_LEGACY
	}
	return pb.Design_DESIGN_UNSPECIFIED
}

// DesignOf names a design from the wire ("unspecified" if it is neither).
func DesignOf(d pb.Design) Design {
	switch d {
	case pb.Design_DESIGN_FIXED:
		return Fixed
	case pb.Design_DESIGN_LEGACY:
		return Legacy
	}
	return "unspecified"
}

// ParseDesigns reads the --design flag of a command that can run either
// design or both: fixed, legacy, or both, in the order both gives (fixed,
// then legacy, if it gives none).
func ParseDesigns(s string, both ...Design) ([]Design, error) {
	if s == "both" {
		if len(both) == 0 {
			both = []Design{Fixed, Legacy}
		}
		return both, nil
	}
	d, err := ParseDesign(s)
	if err != nil {
		return nil, fmt.Errorf("design %q is not fixed, legacy or both", s)
	}
	return []Design{d}, nil
}
