// Package dnswatch asks one DNS server the same A question again and
// again, from before the server is up until stopped, and keeps what a
// resolver would have cached: the tests that start or recreate a node use
// it to show that the node never answers NXDOMAIN or an empty answer for
// an applied endpoint (I2), only SERVFAIL until it can serve.
package dnswatch

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsplan/dnsplan/internal/dnsq"
)

// Watch is one running watch.
type Watch struct {
	stop, done chan struct{}
	halt       sync.Once

	mu                         sync.Mutex
	answers, servfail, correct int
	bad                        []string
}

// Start queries addr over UDP for name's A records every interval. An
// answer is correct when it succeeds with addresses and want is nil, or
// with exactly want (sorted); SERVFAIL is counted apart; anything else is
// bad. A query that gets no answer (the server is not up yet) is not
// counted: a resolver would ask another server.
func Start(addr, name string, want []string, every time.Duration) *Watch {
	w := &Watch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(every):
			}
			r, err := dnsq.Exchange(context.Background(), m, addr, 300*time.Millisecond)
			if err != nil {
				continue
			}
			got := Addresses(r)
			w.mu.Lock()
			w.answers++
			switch {
			case r.Rcode == dns.RcodeServerFailure:
				w.servfail++
			case r.Rcode == dns.RcodeSuccess && len(got) > 0 && (want == nil || slices.Equal(got, want)):
				w.correct++
			default:
				w.bad = append(w.bad, fmt.Sprintf("%s %v", dns.RcodeToString[r.Rcode], got))
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// Addresses returns the A and AAAA addresses of an answer, sorted.
func Addresses(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	slices.Sort(out)
	return out
}

// Counts returns how many answers came, how many were correct.
func (w *Watch) Counts() (answers, correct int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.answers, w.correct
}

// Stop ends the watch and waits for its last query; it may be called more
// than once.
func (w *Watch) Stop() {
	w.halt.Do(func() { close(w.stop) })
	<-w.done
}

// Finish stops the watch and returns an error naming the bad answers, if
// any, else a summary of the answers.
func (w *Watch) Finish(who string) (string, error) {
	w.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.bad) > 0 {
		return "", fmt.Errorf("%s gave %d wrong answers for an applied endpoint (first: %s); %d SERVFAIL, %d correct",
			who, len(w.bad), w.bad[0], w.servfail, w.correct)
	}
	return fmt.Sprintf("%d answers: %d SERVFAIL while catching up, %d correct", w.answers, w.servfail, w.correct), nil
}
