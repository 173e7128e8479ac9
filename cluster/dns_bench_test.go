package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkApplyToDNS measures, on a 3-node cluster over loopback, the time
// from an acknowledged apply until every node's DNS answers the new
// generation (reported as converge-ms), and the whole submit+apply+converge
// cycle as ns/op. Run: go test -run '^$' -bench ApplyToDNS ./cluster
func BenchmarkApplyToDNS(b *testing.B) {
	f := newDNSFixture(b)
	addrs := f.dnsAddrs()
	c := &dns.Client{Net: "udp", Timeout: time.Second}
	var converge time.Duration
	b.ResetTimer()
	for i := range b.N {
		gen := f.apply(samplePlan("api.dnsplan.test.", 10, uint32(10+i%2)))
		acked := time.Now()
		for _, addr := range addrs {
			m := new(dns.Msg)
			m.SetQuestion("_dnsplan.api.dnsplan.test.", dns.TypeTXT)
			for {
				r, _, err := c.Exchange(m, addr)
				if err == nil && len(r.Answer) == 1 && servesGeneration(r.Answer[0], gen) {
					break
				}
			}
		}
		converge += time.Since(acked)
	}
	b.ReportMetric(float64(converge.Microseconds())/1000/float64(b.N), "converge-ms")
}

func servesGeneration(rr dns.RR, gen uint64) bool {
	txt, ok := rr.(*dns.TXT)
	if !ok || len(txt.Txt) == 0 {
		return false
	}
	var g uint64
	_, err := fmt.Sscanf(txt.Txt[0], "generation=%d ", &g)
	return err == nil && g == gen
}
