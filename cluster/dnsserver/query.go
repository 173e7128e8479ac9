package dnsserver

import (
	"cmp"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// UDP payload sizes (RFC 6891 §6.2.5): a query without EDNS gets 512
// octets; with EDNS the client's advertised size, at least 512 and at most
// maxUDPSize, which is also what the server advertises back. TCP replies
// may use the whole 65535.
const maxUDPSize = 4096

// ServeDNS answers one query from the current view. It implements
// dns.Handler and takes no lock.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	var start time.Time
	if s.metrics != nil {
		start = time.Now()
	}
	tcp := overTCP(w)
	var m *dns.Msg
	if !tcp && !s.rrl.Allow(clientPrefix(w.RemoteAddr())) {
		m = truncated(r)
		s.metrics.limited()
	} else {
		m = s.answer(r, tcp)
	}
	if err := w.WriteMsg(m); err != nil {
		// Per-query logging would flood the log under load or attack; the
		// failure is the client's or the network's, and it retries.
		s.log.Debug("dns reply not written", "error", err)
	}
	s.metrics.observe(r, m.Rcode, start)
}

// truncated is the answer to a UDP query over its client's rate: TC set,
// no records, the question echoed. No bigger than the query, it gives a
// spoofed flood nothing to amplify, and a real client retries over TCP,
// which is not rate-limited.
func truncated(r *dns.Msg) *dns.Msg {
	m := &dns.Msg{}
	m.Id, m.Response, m.Opcode, m.Truncated = r.Id, true, r.Opcode, true
	m.RecursionDesired = r.RecursionDesired
	if len(r.Question) == 1 {
		m.Question = r.Question[:1:1]
	}
	return m
}

// clientPrefix is the network a UDP client is rate-limited with: its /24
// (IPv4) or /56 (IPv6), so that one host cannot escape the limit by
// rotating addresses within its own network.
func clientPrefix(a net.Addr) string {
	u, ok := a.(*net.UDPAddr)
	if !ok {
		return ""
	}
	ip, ok := netip.AddrFromSlice(u.IP)
	if !ok {
		return ""
	}
	ip = ip.Unmap()
	bits := 24
	if ip.Is6() {
		bits = 56
	}
	p, _ := ip.Prefix(bits)
	return p.String()
}

// overTCP reports whether the query came over a stream transport, where the
// reply is not limited to the UDP payload size.
func overTCP(w dns.ResponseWriter) bool {
	a := w.RemoteAddr()
	return a != nil && a.Network() == "tcp"
}

// answer builds the complete reply to r, truncated to what the transport
// carries.
func (s *Server) answer(r *dns.Msg, tcp bool) *dns.Msg {
	m := &dns.Msg{}
	m.Id = r.Id
	m.Response = true
	m.Opcode = r.Opcode
	switch {
	case r.Response:
		// A response sent as a query. (The network server drops these
		// before ServeDNS; see acceptQuery.)
		m.Rcode = dns.RcodeFormatError
		return m
	case r.Opcode != dns.OpcodeQuery:
		// NOTIFY, UPDATE and the rest: an authority fed by Raft has no use
		// for them.
		m.Rcode = dns.RcodeNotImplemented
		if len(r.Question) == 1 {
			m.Question = r.Question[:1:1]
		}
		return m
	case len(r.Question) != 1 || !dns.IsFqdn(r.Question[0].Name):
		m.Rcode = dns.RcodeFormatError
		return m
	}
	// The question is echoed exactly as asked (case included: resolvers
	// using 0x20 randomization compare it). Sharing the request's slice is
	// safe: neither side writes to it after this.
	m.Question = r.Question[:1:1]
	m.RecursionDesired = r.RecursionDesired
	m.CheckingDisabled = r.CheckingDisabled

	size := dns.MinMsgSize
	if optCount(r) > 1 {
		m.Rcode = dns.RcodeFormatError // RFC 6891 §6.1.1
		return m
	}
	if opt := r.IsEdns0(); opt != nil {
		if opt.Hdr.Name != "." {
			m.Rcode = dns.RcodeFormatError // RFC 6891 §6.1.2: owner must be root
			return m
		}
		reply := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		reply.SetUDPSize(maxUDPSize)
		if opt.Do() {
			reply.SetDo() // RFC 3225 §3: copied, though nothing here is signed
		}
		m.Extra = []dns.RR{reply}
		if opt.Version() != 0 {
			// Only EDNS version 0 exists; BADVERS needs the OPT just added
			// to carry its upper bits.
			m.Rcode = dns.RcodeBadVers
			return m
		}
		size = int(min(max(opt.UDPSize(), dns.MinMsgSize), maxUDPSize))
	}
	if tcp {
		size = dns.MaxMsgSize
	}

	s.resolve(m, r.Question[0])
	m.Truncate(size)
	return m
}

// optCount counts OPT records in the additional section.
func optCount(r *dns.Msg) int {
	n := 0
	for _, rr := range r.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			n++
		}
	}
	return n
}

// resolve fills m's rcode, flags and sections for the question q.
func (s *Server) resolve(m *dns.Msg, q dns.Question) {
	switch q.Qtype {
	case dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY:
		// Pseudo-types that cannot be asked for (RFC 6895 §3.1).
		m.Rcode = dns.RcodeFormatError
		return
	}
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		// There is no data in CHAOS or any other class.
		m.Rcode = dns.RcodeRefused
		return
	}
	name := strings.ToLower(q.Name) // allocation-free when already lower case
	v := s.view.Load()
	z := v.zoneFor(name)
	if z == nil {
		m.Rcode = dns.RcodeRefused // not authoritative, and no recursion
		return
	}
	if !v.loaded {
		// Not yet given data to serve (a node still catching up after a
		// restart): SERVFAIL sends resolvers to another node and is not
		// cached as an answer.
		m.Rcode = dns.RcodeServerFailure
		return
	}
	if q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		// Zone transfers are not offered: every node has the data already,
		// from Raft.
		m.Rcode = dns.RcodeRefused
		return
	}
	m.Authoritative = true
	n := z.names[name]
	if n == nil {
		m.Rcode = dns.RcodeNameError
		m.Ns = z.soa
		return
	}
	switch q.Qtype {
	case dns.TypeA:
		m.Answer = s.weighted(&n.a)
	case dns.TypeAAAA:
		m.Answer = s.weighted(&n.aaaa)
	case dns.TypeTXT:
		m.Answer = n.txt
	case dns.TypeSOA:
		if n.apex {
			m.Answer = z.soa
		}
	case dns.TypeNS:
		if n.apex {
			m.Answer = z.ns
		}
	case dns.TypeANY:
		// RFC 8482 §4.2: a minimal answer, one synthesized HINFO, instead of
		// every record; a large ANY answer only serves amplification attacks
		// and nobody needs it from a zone whose data is public over A/AAAA.
		if n.hasData() {
			m.Answer = []dns.RR{&dns.HINFO{
				Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeHINFO, Class: dns.ClassINET, Ttl: anyTTL},
				Cpu: "RFC8482",
			}}
		}
	}
	if len(m.Answer) == 0 {
		// NODATA (RFC 2308 §2.2): the name exists, the type does not. This
		// includes empty non-terminals (RFC 8020).
		m.Ns = z.soa
	}
}

// keyed is one record with its sort key for the weighted order.
type keyed struct {
	key float64
	rr  dns.RR
}

// stackKeys is how many records the weighted order sorts without a heap
// allocation; endpoints rarely have more targets than this.
const stackKeys = 16

// weighted returns set's records in a weighted random order: a record of
// weight w is first with probability w/Σw, and so on down the list, which is
// weighted sampling without replacement (Efraimidis and Spirakis, 2006). In
// its exponential form each record draws key = -ln(U)/w with U uniform in
// (0,1) and the records are sorted by ascending key: the minimum of
// independent exponentials of rates w_i is the i-th with probability
// w_i/Σw. Clients mostly use the first address, so this is how weights turn
// into traffic shares.
//
// The result is a fresh slice; the records are the view's shared ones.
func (s *Server) weighted(set *rrset) []dns.RR {
	n := len(set.rrs)
	if n <= 1 {
		return set.rrs // nothing to order, and callers never write to it
	}
	var buf [stackKeys]keyed
	ks := buf[:0]
	if n > stackKeys {
		ks = make([]keyed, 0, n)
	}
	for i, rr := range set.rrs {
		// The top 53 bits, offset by half a step: uniform in the open
		// interval (0,1), so the logarithm is finite.
		u := (float64(s.rand()>>11) + 0.5) * 0x1p-53
		ks = append(ks, keyed{key: -math.Log(u) * set.inv[i], rr: rr})
	}
	slices.SortFunc(ks, func(a, b keyed) int { return cmp.Compare(a.key, b.key) })
	out := make([]dns.RR, n)
	for i := range ks {
		out[i] = ks[i].rr
	}
	return out
}
