package dnsserver

import (
	"testing"

	"github.com/miekg/dns"
)

// FuzzServeDNS feeds arbitrary bytes to the handler the way the network
// server does (unpack, then ServeDNS). Whatever arrives, the handler must
// not panic, must write exactly one reply that packs and unpacks with the
// query's ID and fits the transport, and must go on answering normally.
//
//	go test -run '^$' -fuzz '^FuzzServeDNS$' -fuzztime 10s ./cluster/dnsserver
func FuzzServeDNS(f *testing.F) {
	seed := func(m *dns.Msg, tcp bool) {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, tcp)
	}
	seed(question("api.dnsplan.test.", dns.TypeA), false)
	seed(question("API.dnsplan.test.", dns.TypeAAAA), true)
	seed(question("big.dnsplan.test.", dns.TypeA), false)
	seed(withEDNS(question("big.dnsplan.test.", dns.TypeA), 1232), false)
	seed(question("_dnsplan.api.dnsplan.test.", dns.TypeTXT), false)
	seed(question("path.dnsplan.test.", dns.TypeANY), false)
	seed(question("nope.inner.dnsplan.test.", dns.TypeSOA), false)
	seed(question("example.com.", dns.TypeNS), false)
	bad := withEDNS(question("api.dnsplan.test.", dns.TypeA), 4096)
	bad.IsEdns0().SetVersion(3)
	seed(bad, false)
	two := question("api.dnsplan.test.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	seed(two, false)
	notify := question("dnsplan.test.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	seed(notify, false)
	resp := question("api.dnsplan.test.", dns.TypeA)
	resp.Response = true
	seed(resp, false)
	f.Add([]byte{}, false)
	f.Add(make([]byte, 12), false)

	s := newTestServer(f, Config{}, append(testApplied(), bigEndpoint("big.dnsplan.test.", 200)))
	normal := question("api.dnsplan.test.", dns.TypeA)

	f.Fuzz(func(t *testing.T, data []byte, tcp bool) {
		req := new(dns.Msg)
		if err := req.Unpack(data); err != nil {
			return // the network server answers these itself, before ServeDNS
		}
		w := &captureWriter{tcp: tcp}
		s.ServeDNS(w, req)
		if len(w.errs) > 0 {
			t.Fatalf("reply does not survive the wire: %v\nquery:\n%v", w.errs, req)
		}
		if len(w.replies) != 1 {
			t.Fatalf("%d replies, want 1", len(w.replies))
		}
		r := w.replies[0]
		if r.Id != req.Id || !r.Response {
			t.Fatalf("reply id %d QR %v, want id %d and QR set", r.Id, r.Response, req.Id)
		}
		if !tcp {
			limit := dns.MinMsgSize
			if opt := req.IsEdns0(); opt != nil {
				limit = int(min(max(opt.UDPSize(), dns.MinMsgSize), maxUDPSize))
			}
			if w.wire[0] > limit {
				t.Fatalf("UDP reply of %d octets, over the limit %d", w.wire[0], limit)
			}
		}
		if got := serve(t, s, normal, false); got.Rcode != dns.RcodeSuccess || len(got.Answer) != 2 {
			t.Fatalf("normal query after the input: rcode %d, answer %v", got.Rcode, got.Answer)
		}
	})
}
