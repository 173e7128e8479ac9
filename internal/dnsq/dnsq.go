// Package dnsq asks a DNS server as a resolver does: over UDP, and again
// over TCP when the answer comes back truncated (too big for UDP, or the
// server's response rate limit). The probe, the scenario and the tests'
// DNS watches ask with it, so that a truncated answer is never taken for
// an empty one.
package dnsq

import (
	"context"
	"time"

	"github.com/miekg/dns"
)

// Exchange sends m to addr over UDP, then over TCP if the answer is
// truncated; each attempt is bounded by timeout.
func Exchange(ctx context.Context, m *dns.Msg, addr string, timeout time.Duration) (*dns.Msg, error) {
	r, _, err := (&dns.Client{Net: "udp", Timeout: timeout}).ExchangeContext(ctx, m, addr)
	if err == nil && r.Truncated {
		r, _, err = (&dns.Client{Net: "tcp", Timeout: timeout}).ExchangeContext(ctx, m, addr)
	}
	return r, err
}
