package dnsserver

import (
	"fmt"
	"net"
	"strings"

	"github.com/miekg/dns"

	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Fixed zone parameters. The SOA TTL equals its MINIMUM so that a negative
// answer is cached for min(SOA TTL, MINIMUM) = negativeTTL (RFC 2308 §5):
// short, because a name that does not exist yet may be applied any moment.
const (
	negativeTTL = 30
	soaTTL      = negativeTTL
	soaRefresh  = 3600
	soaRetry    = 600
	soaExpire   = 86400
	nsTTL       = 3600
	// debugTTL is the TTL of the _dnsplan TXT record: zero, because it exists
	// to show what this node serves now and a cached copy would mislead.
	debugTTL = 0
	// anyTTL is the TTL of the synthesized RFC 8482 HINFO answer; long enough
	// to stop a resolver asking ANY again soon (RFC 8482 §4.2).
	anyTTL = 3600
	// debugLabel prefixes an endpoint's name to form its TXT debug record.
	debugLabel = "_dnsplan."
)

// view is one immutable snapshot of everything the server answers. Nothing
// reachable from a view is written after it is published: queries share its
// record slices and only ever copy or re-slice them.
type view struct {
	// loaded is false until the first Update: until then the server does
	// not know what its zones hold and must not claim (with NXDOMAIN, which
	// resolvers cache) that names do not exist.
	loaded bool
	zones  map[string]*zone // by apex, lower case
	// root is the zone "." when configured: the apex walk in zoneFor never
	// reaches the empty suffix, so it is kept apart.
	root *zone
	// generations, outOfZone and problems remember this view's inputs so
	// the next Update can report what changed suspiciously, and report a
	// lasting problem once rather than after every state change.
	generations map[string]uint64
	outOfZone   map[string]bool
	problems    map[string]bool
}

// zone is one authoritative zone of a view.
type zone struct {
	apex   string
	serial uint32
	soa    []dns.RR // exactly one SOA, for answers and negative authority sections
	ns     []dns.RR
	// names holds every name that exists in the zone: the apex, each
	// endpoint, each _dnsplan debug name, and every empty non-terminal
	// between them and the apex (RFC 8020: those exist, so are not
	// NXDOMAIN). A name missing here does not exist.
	names map[string]*node
}

// node is the data at one name. A node with no records is an empty
// non-terminal (or an apex without an endpoint of its own).
type node struct {
	a, aaaa rrset
	txt     []dns.RR
	apex    bool
}

// hasData reports whether any record exists at the name, for ANY queries.
func (n *node) hasData() bool {
	return n.apex || len(n.a.rrs) > 0 || len(n.aaaa.rrs) > 0 || len(n.txt) > 0
}

// rrset is one endpoint's A or AAAA records, pre-built, with each record's
// inverse weight (1/weight) for the weighted order: only targets of weight >
// 0 are in it, so every inverse is finite.
type rrset struct {
	rrs []dns.RR
	inv []float64
}

// zoneFor returns the most specific zone containing name (lower case), or
// nil when the server is not authoritative for it. Walking the name's
// suffixes from the longest finds the most specific zone first.
func (v *view) zoneFor(name string) *zone {
	for off, end := 0, false; !end; off, end = dns.NextLabel(name, off) {
		if z, ok := v.zones[name[off:]]; ok {
			return z
		}
	}
	return v.root
}

// zoneSpec is a configured zone: its apex and the NS names served there.
type zoneSpec struct {
	apex    string
	nsNames []string
}

// buildView turns the applied endpoints into a view. prev is the view being
// replaced (nil at first); it only keeps SOA serials from going backwards.
// Entries the server cannot serve are skipped and listed in the view's
// problems, for the caller to log: the state machine validated them, so any
// problem here is a bug upstream, not a reason to stop answering the rest.
func buildView(specs []zoneSpec, applied []*pb.AppliedEndpoint, prev *view) *view {
	v := &view{
		zones:       make(map[string]*zone, len(specs)),
		generations: make(map[string]uint64, len(applied)),
		outOfZone:   make(map[string]bool),
		problems:    make(map[string]bool),
	}

	// Keep one entry per name, the newest: a caller passing duplicates must
	// not make the answer depend on their order.
	latest := make(map[string]*pb.AppliedEndpoint, len(applied))
	for _, ep := range applied {
		if ep == nil {
			continue
		}
		name := contract.CanonicalName(ep.GetEndpoint())
		if err := contract.ValidateName(name); err != nil {
			v.problem("endpoint skipped: %v", err)
			continue
		}
		if old, ok := latest[name]; !ok || ep.GetRevision() > old.GetRevision() {
			latest[name] = ep
		}
	}

	for _, sp := range specs {
		z := &zone{apex: sp.apex, names: map[string]*node{sp.apex: {apex: true}}}
		for _, ns := range sp.nsNames {
			z.ns = append(z.ns, &dns.NS{
				Hdr: dns.RR_Header{Name: sp.apex, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: nsTTL},
				Ns:  ns,
			})
		}
		v.zones[sp.apex] = z
		if sp.apex == "." {
			v.root = z
		}
	}

	maxRev := make(map[*zone]uint64, len(v.zones))
	for name, ep := range latest {
		z := v.zoneFor(name)
		if z == nil {
			v.outOfZone[name] = true
			continue
		}
		v.generations[name] = ep.GetGeneration()
		n := z.ensure(name)
		n.a, n.aaaa = v.addresses(name, ep)
		if txtName := debugLabel + name; contract.ValidateName(txtName) == nil {
			// The debug name may in theory fall into a more specific zone.
			tz := v.zoneFor(txtName)
			tz.ensure(txtName).txt = []dns.RR{debugTXT(txtName, ep)}
			maxRev[tz] = max(maxRev[tz], ep.GetRevision())
		}
		maxRev[z] = max(maxRev[z], ep.GetRevision())
	}

	for apex, z := range v.zones {
		// The serial is the newest revision in the zone: revisions are log
		// indexes, so any change to any record of the zone raises it. It is
		// truncated to 32 bits; RFC 1982 serial arithmetic copes with the wrap
		// as long as one step is below 2^31.
		z.serial = uint32(maxRev[z])
		if z.serial == 0 {
			z.serial = 1
		}
		if prev != nil {
			if pz, ok := prev.zones[apex]; ok && serialLess(z.serial, pz.serial) {
				// Applied records are never deleted and revisions only grow,
				// so this means a caller handed an older state; secondaries
				// must still never see the serial go back.
				z.serial = pz.serial
			}
		}
		mname := apex
		if len(z.ns) > 0 {
			mname = z.ns[0].(*dns.NS).Ns
		}
		z.soa = []dns.RR{&dns.SOA{
			Hdr:     dns.RR_Header{Name: apex, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: soaTTL},
			Ns:      mname,
			Mbox:    hostmaster(apex),
			Serial:  z.serial,
			Refresh: soaRefresh,
			Retry:   soaRetry,
			Expire:  soaExpire,
			Minttl:  negativeTTL,
		}}
	}
	return v
}

// ensure returns the node at name, creating it and every missing empty
// non-terminal between it and the apex. name must be in the zone.
func (z *zone) ensure(name string) *node {
	n, ok := z.names[name]
	if ok {
		return n
	}
	n = &node{}
	z.names[name] = n
	for off, end := dns.NextLabel(name, 0); !end; off, end = dns.NextLabel(name, off) {
		parent := name[off:]
		if _, ok := z.names[parent]; ok {
			// The apex is always present, so the walk stops at the latest there.
			break
		}
		z.names[parent] = &node{}
	}
	return n
}

// problem records an applied entry the view cannot serve.
func (v *view) problem(format string, args ...any) {
	v.problems[fmt.Sprintf(format, args...)] = true
}

// addresses pre-builds an endpoint's A and AAAA records from its targets of
// weight > 0. Weight 0 keeps a target in the plan but out of DNS: that is
// how an operator drains a backend.
func (v *view) addresses(name string, ep *pb.AppliedEndpoint) (a, aaaa rrset) {
	for _, t := range ep.GetTargets() {
		if t.GetWeight() == 0 {
			continue
		}
		addr, err := contract.ParseAddress(t.GetAddress())
		if err != nil {
			v.problem("endpoint %s target %s skipped: %v", name, t.GetId(), err)
			continue
		}
		hdr := dns.RR_Header{Name: name, Class: dns.ClassINET, Ttl: ep.GetTtl()}
		inv := 1 / float64(t.GetWeight())
		if addr.Is4() {
			hdr.Rrtype = dns.TypeA
			b := addr.As4()
			a.rrs = append(a.rrs, &dns.A{Hdr: hdr, A: net.IP(b[:])})
			a.inv = append(a.inv, inv)
		} else {
			hdr.Rrtype = dns.TypeAAAA
			b := addr.As16()
			aaaa.rrs = append(aaaa.rrs, &dns.AAAA{Hdr: hdr, AAAA: net.IP(b[:])})
			aaaa.inv = append(aaaa.inv, inv)
		}
	}
	return a, aaaa
}

// debugTXT is the record at _dnsplan.<endpoint> that tells an operator with
// only dig which apply this node serves.
func debugTXT(owner string, ep *pb.AppliedEndpoint) dns.RR {
	text := fmt.Sprintf("generation=%d enactor=%s revision=%d", ep.GetGeneration(), ep.GetEnactorId(), ep.GetRevision())
	return &dns.TXT{
		Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: debugTTL},
		Txt: txtStrings(text),
	}
}

// txtStrings splits s into the 255-octet character-strings a TXT record
// holds, escaped the way miekg/dns expects its Txt fields (a backslash
// starts an escape there, so a literal one must be doubled).
func txtStrings(s string) []string {
	var out []string
	for {
		chunk := s
		if len(chunk) > 255 {
			chunk = chunk[:255]
		}
		out = append(out, strings.ReplaceAll(chunk, `\`, `\\`))
		s = s[len(chunk):]
		if s == "" {
			return out
		}
	}
}

// hostmaster is the SOA RNAME of a zone: hostmaster@<apex>.
func hostmaster(apex string) string {
	if apex == "." {
		return "hostmaster."
	}
	return "hostmaster." + apex
}

// serialLess is RFC 1982 "a < b" for 32-bit serials.
func serialLess(a, b uint32) bool {
	return a != b && int32(b-a) > 0
}
