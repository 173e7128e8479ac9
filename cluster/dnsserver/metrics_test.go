package dnsserver

import (
	"testing"

	"github.com/miekg/dns"
)

// TestLabelTables keeps the index functions and the label tables in step:
// each label names what its index function maps to it.
func TestLabelTables(t *testing.T) {
	for i, name := range qtypeLabels {
		if i < 2 {
			continue
		}
		q := question("x.", dns.StringToType[name])
		if got := qtypeIndex(q); got != i {
			t.Errorf("qtypeIndex(%s) = %d (%s), want %d", name, got, qtypeLabels[got], i)
		}
	}
	if got := qtypeIndex(question("x.", 65280)); qtypeLabels[got] != "other" {
		t.Errorf("private type labelled %s, want other", qtypeLabels[got])
	}
	for i, name := range rcodeLabels {
		if i == 0 {
			continue
		}
		rcode, ok := dns.StringToRcode[name]
		if name == "BADVERS" {
			// miekg/dns names 16 BADSIG (TSIG); as an EDNS rcode it is BADVERS.
			rcode, ok = dns.RcodeBadVers, true
		}
		if !ok {
			t.Fatalf("unknown rcode label %s", name)
		}
		if got := rcodeIndex(rcode); got != i {
			t.Errorf("rcodeIndex(%s) = %d (%s), want %d", name, got, rcodeLabels[got], i)
		}
	}
	if got := rcodeIndex(dns.RcodeYXDomain); rcodeLabels[got] != "other" {
		t.Errorf("YXDOMAIN labelled %s, want other", rcodeLabels[got])
	}
}
