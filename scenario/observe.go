package scenario

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/internal/dnsq"
	"github.com/dnsplan/dnsplan/internal/poll"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// dnsTimeout bounds one DNS query; settle retries within its own bound.
const dnsTimeout = 500 * time.Millisecond

// settle waits until every node has applied everything the cluster had
// applied when it was called and its DNS answers from that state, then
// returns what each node's DNS answers for each of endpoints (answers[e][n]
// is endpoint e on node n), and waits for the checker to finish a round
// that began after that.
//
// Nothing here presumes what the answer should be: "from that state"
// means the DNS answer matches the node's own replica (the generation and
// the addresses of its record, or no such name), whatever the design made
// of it. Waiting for that is what keeps the timeline deterministic
// without sleeps: a write acknowledged by the leader reaches followers and
// their DNS a few milliseconds later. The replica is read again on every
// try, so that an enactor loop applying a plan meanwhile only means
// waiting for its write too.
func (s *stage) settle(ctx context.Context, endpoints ...string) ([][]Answer, error) {
	var target uint64
	for _, addr := range s.c.grpc {
		st, err := s.cl.StatusOf(ctx, addr)
		if err != nil {
			return nil, fmt.Errorf("status of %s: %w", addr, err)
		}
		// The leader applied every acknowledged write before answering
		// it, so the largest applied index covers the step just done.
		target = max(target, st.GetAppliedIndex())
	}
	answers := make([][]Answer, len(endpoints))
	for e := range endpoints {
		answers[e] = make([]Answer, len(s.c.ids))
	}
	for i, id := range s.c.ids {
		addr := s.c.grpc[i]
		err := poll.Until(ctx, s.opts.StepTimeout, fmt.Sprintf("%s to apply index %d", id, target), func() bool {
			st, err := s.cl.StatusOf(ctx, addr)
			return err == nil && st.GetAppliedIndex() >= target
		})
		if err != nil {
			return nil, err
		}
		for e, name := range endpoints {
			var got, want Answer
			err = poll.Until(ctx, s.opts.StepTimeout, fmt.Sprintf("%s's DNS to answer %s from its replica", id, name), func() bool {
				rec, err := s.cl.GetAppliedOf(ctx, addr, name)
				switch {
				case status.Code(err) == codes.NotFound:
					rec = nil
				case err != nil:
					return false
				}
				want = expectedAnswer(rec)
				got = askDNS(ctx, id, s.c.dns[i], name)
				return got.Rcode == want.Rcode && got.Generation == want.Generation && slices.Equal(got.Addresses, want.Addresses)
			})
			if err != nil {
				return nil, fmt.Errorf("%w; it answers %s, its replica holds %s", err, got, want)
			}
			answers[e][i] = got
		}
	}
	rounds := s.checker.Summary().Rounds
	// Two rounds: the first may have begun before this step was settled.
	err := poll.Until(ctx, s.opts.StepTimeout, "the checker to take a round", func() bool {
		return s.checker.Summary().Rounds >= rounds+2
	})
	return answers, err
}

// expectedAnswer is what a node whose replica holds rec must answer for an
// A query: NXDOMAIN without a record (the name does not exist yet), else
// the record's generation and IPv4 addresses of weight > 0, sorted.
func expectedAnswer(rec *pb.AppliedEndpoint) Answer {
	if rec == nil {
		return Answer{Rcode: dns.RcodeToString[dns.RcodeNameError]}
	}
	a := Answer{Rcode: dns.RcodeToString[dns.RcodeSuccess], Generation: rec.GetGeneration()}
	for _, t := range rec.GetTargets() {
		ip, err := netip.ParseAddr(t.GetAddress())
		if err == nil && ip.Is4() && t.GetWeight() > 0 {
			a.Addresses = append(a.Addresses, ip.String())
		}
	}
	slices.Sort(a.Addresses)
	return a
}

// askDNS asks one node's DNS (over UDP, TCP if truncated) for name's A records and its
// _dnsplan TXT record (which names the generation served). A failed query
// gives an answer whose Rcode says why.
func askDNS(ctx context.Context, node, addr, name string) Answer {
	ans := Answer{Node: node, Addresses: []string{}}
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.RecursionDesired = false
	resp, err := dnsq.Exchange(ctx, m, addr, dnsTimeout)
	if err != nil {
		ans.Rcode = "error: " + err.Error()
		return ans
	}
	ans.Rcode = dns.RcodeToString[resp.Rcode]
	for _, rr := range resp.Answer {
		if a, ok := rr.(*dns.A); ok {
			ans.Addresses = append(ans.Addresses, a.A.String())
		}
	}
	slices.Sort(ans.Addresses)

	m = new(dns.Msg)
	m.SetQuestion("_dnsplan."+name, dns.TypeTXT)
	m.RecursionDesired = false
	if resp, err = dnsq.Exchange(ctx, m, addr, dnsTimeout); err != nil {
		ans.Rcode = "error: " + err.Error()
		return ans
	}
	for _, rr := range resp.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			for _, field := range strings.Fields(strings.Join(txt.Txt, " ")) {
				if v, ok := strings.CutPrefix(field, "generation="); ok {
					_, _ = fmt.Sscan(v, &ans.Generation)
				}
			}
		}
	}
	return ans
}

// String is the answer as the timeline prints it.
func (a Answer) String() string {
	switch {
	case a.Rcode != dns.RcodeToString[dns.RcodeSuccess]:
		return a.Rcode
	case a.Empty():
		return fmt.Sprintf("generation %d, NO ADDRESSES", a.Generation)
	}
	return fmt.Sprintf("generation %d, %s", a.Generation, strings.Join(a.Addresses, " "))
}

// errorText is an error as the timeline shows it: the gRPC code and the
// cluster's message.
func errorText(err error) string {
	// The innermost status carries the cluster's own message, without the
	// context the caller wrapped around it.
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		s := se.GRPCStatus()
		return fmt.Sprintf("%s: %s", codeName(s.Code()), s.Message())
	}
	return err.Error()
}

// codeName is a gRPC code as the contract writes it (FAILED_PRECONDITION).
func codeName(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}
