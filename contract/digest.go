package contract

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// PlanDigest names what a plan asks DNS to serve: "sha256:" and the hex
// SHA-256 of the plan's canonical text, one line per endpoint in order of
// canonical name ("name ttl", then " min N F" when it has a minimum
// healthy), each followed by one line per target in order of id
// ("\tLEN:id address weight": the id, which may hold any byte, prefixed by
// its length, so no id can pass for another line; the address in its
// canonical form). Names and addresses hold no spaces, so the text reads
// back one way only. The generation, planner, creation time and forced
// flag are not part of it, so a plan file and the plan stored from it
// have one digest, and two plans with one digest serve the same records
// under the same rules. docs/CONTRACT.md ("Plan digest") defines it for
// other programs.
func PlanDigest(p *pb.Plan) string {
	eps := slices.Clone(p.GetEndpoints())
	slices.SortStableFunc(eps, func(a, b *pb.EndpointPlan) int {
		return cmp.Compare(CanonicalName(a.GetName()), CanonicalName(b.GetName()))
	})
	var b strings.Builder
	for _, ep := range eps {
		fmt.Fprintf(&b, "%s %d", CanonicalName(ep.GetName()), ep.GetTtl())
		if ep.GetMinHealthyTargets() > 0 || ep.GetMinHealthyFraction() > 0 {
			fmt.Fprintf(&b, " min %d %s", ep.GetMinHealthyTargets(), strconv.FormatFloat(ep.GetMinHealthyFraction(), 'g', -1, 64))
		}
		b.WriteByte('\n')
		ts := slices.Clone(ep.GetTargets())
		slices.SortStableFunc(ts, func(x, y *pb.Target) int { return cmp.Compare(x.GetId(), y.GetId()) })
		for _, t := range ts {
			fmt.Fprintf(&b, "\t%d:%s %s %d\n", len(t.GetId()), t.GetId(), canonicalAddress(t.GetAddress()), t.GetWeight())
		}
	}
	sum := sha256.Sum256([]byte(b.String()))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ValidateDigest checks that s has the form of a plan digest.
func ValidateDigest(s string) error {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 2*sha256.Size || strings.Trim(h, "0123456789abcdef") != "" {
		return fmt.Errorf("%w: a plan digest is sha256: and 64 lower-case hex digits (%d bytes given)", ErrInvalid, len(s))
	}
	return nil
}

// canonicalAddress is an address as netip prints it (IPv6 compressed,
// lower case); one that does not parse is left as it is.
func canonicalAddress(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String()
	}
	return s
}
