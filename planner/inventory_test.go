package planner

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dnsplan/dnsplan/contract"
)

// contractExample is the inventory of docs/CONTRACT.md, verbatim.
const contractExample = `zone: dnsplan.test.
endpoints:
  - name: api.dnsplan.test.
    ttl: 30
    targets:
      - id: lb-a
        address: 192.0.2.10
        capacity: 100
        check: http://192.0.2.10:8080/healthz   # or tcp://host:port; no check = always healthy
`

func TestParseInventoryContractExample(t *testing.T) {
	inv, err := ParseInventory([]byte(contractExample))
	if err != nil {
		t.Fatal(err)
	}
	want := &Inventory{Zone: "dnsplan.test.", Endpoints: []Endpoint{{
		Name: "api.dnsplan.test.", TTL: 30,
		Targets: []Target{{ID: "lb-a", Address: "192.0.2.10", Capacity: 100, Check: "http://192.0.2.10:8080/healthz"}},
	}}}
	if !reflect.DeepEqual(inv, want) {
		t.Errorf("got %+v, want %+v", inv, want)
	}
}

// The parsed inventory is canonical: names lower case, addresses in
// canonical form, endpoints and targets sorted; the apex is an endpoint
// like any other; a target id may serve several endpoints.
func TestParseInventoryCanonical(t *testing.T) {
	in := `zone: DNSplan.Test.
endpoints:
  - name: WWW.dnsplan.test.
    ttl: 60
    targets:
      - {id: lb-b, address: "2001:DB8::0001", capacity: 4294967295, check: "tcp://[2001:db8::1]:443"}
      - {id: lb-a, address: 192.0.2.1, capacity: 1, check: "https://lb-a.example/health?full=1"}
  - name: dnsplan.test.
    ttl: 86400
    targets:
      - {id: lb-a, address: 192.0.2.2, capacity: 7, check: "https://lb-a.example/health?full=1"}
      - {id: static, address: 192.0.2.3, capacity: 1}
`
	inv, err := ParseInventory([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := &Inventory{Zone: "dnsplan.test.", Endpoints: []Endpoint{
		{Name: "dnsplan.test.", TTL: 86400, Targets: []Target{
			{ID: "lb-a", Address: "192.0.2.2", Capacity: 7, Check: "https://lb-a.example/health?full=1"},
			{ID: "static", Address: "192.0.2.3", Capacity: 1},
		}},
		{Name: "www.dnsplan.test.", TTL: 60, Targets: []Target{
			{ID: "lb-a", Address: "192.0.2.1", Capacity: 1, Check: "https://lb-a.example/health?full=1"},
			{ID: "lb-b", Address: "2001:db8::1", Capacity: 4294967295, Check: "tcp://[2001:db8::1]:443"},
		}},
	}}
	if !reflect.DeepEqual(inv, want) {
		t.Errorf("got %+v\nwant %+v", inv, want)
	}
	// Validate on the canonical form changes nothing.
	again, err := inv.Validate()
	if err != nil || !reflect.DeepEqual(again, inv) {
		t.Errorf("Validate of a parsed inventory: %+v, %v", again, err)
	}
}

// The compose cluster's inventory must load.
func TestDeployInventoryLoads(t *testing.T) {
	path := filepath.Join("..", "deploy", "inventory.yaml")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("no %s: %v", path, err)
	}
	if _, err := LoadInventory(path); err != nil {
		t.Fatal(err)
	}
}

func TestLoadInventoryNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("zone: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{bad, filepath.Join(dir, "missing.yaml")} {
		if _, err := LoadInventory(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("LoadInventory(%s) = %v, want an error naming the file", path, err)
		}
	}
}

// inventoryWith is a valid one-endpoint inventory with the target line
// replaced, for the table below.
func inventoryWith(target string) string {
	return "zone: dnsplan.test.\nendpoints:\n  - name: api.dnsplan.test.\n    ttl: 30\n    targets:\n      - " + target + "\n"
}

func TestParseInventoryRejects(t *testing.T) {
	manyTargets := "zone: dnsplan.test.\nendpoints:\n  - name: api.dnsplan.test.\n    ttl: 30\n    targets:\n"
	for i := range contract.MaxTargetsPerEndpoint + 1 {
		manyTargets += fmt.Sprintf("      - {id: t%d, address: 192.0.2.1, capacity: 1}\n", i)
	}
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "empty"},
		{"only a comment", "# nothing\n", "empty"},
		{"not a mapping", "- zone\n", "not valid YAML"},
		{"unknown top-level field", "zone: dnsplan.test.\nzones: [a.]\nendpoints: []\n", "field zones not found"},
		{"misspelt target field", inventoryWith("{id: lb-a, address: 192.0.2.1, capacty: 1}"), "field capacty not found"},
		{"two documents", contractExample + "---\nzone: other.\n", "more than one YAML document"},
		{"ttl not a number", strings.Replace(contractExample, "ttl: 30", "ttl: thirty", 1), "not valid YAML"},
		{"no zone", "endpoints: []\n", "zone is required"},
		{"zone not fully qualified", strings.Replace(contractExample, "zone: dnsplan.test.", "zone: dnsplan.test", 1), `zone: name "dnsplan.test" is not fully qualified`},
		{"no endpoints", "zone: dnsplan.test.\n", "no endpoints"},
		{"endpoint without name", "zone: dnsplan.test.\nendpoints:\n  - ttl: 30\n", "endpoint 1: name is required"},
		{"endpoint not fully qualified", strings.Replace(contractExample, "name: api.dnsplan.test.", "name: api.dnsplan.test", 1), `endpoint 1: name "api.dnsplan.test" is not fully qualified`},
		{"endpoint bad label", strings.Replace(contractExample, "name: api.dnsplan.test.", "name: -api.dnsplan.test.", 1), "hyphen"},
		{"endpoint outside zone", strings.Replace(contractExample, "name: api.dnsplan.test.", "name: api.example.com.", 1), `endpoint "api.example.com." is not inside zone "dnsplan.test."`},
		{"endpoint that only ends like the zone", strings.Replace(contractExample, "name: api.dnsplan.test.", "name: notdnsplan.test.", 1), `endpoint "notdnsplan.test." is not inside zone`},
		{"endpoint twice", contractExample + strings.Replace(contractExample[strings.Index(contractExample, "  - name"):], "api.dnsplan", "API.dnsplan", 1), `endpoint "api.dnsplan.test." appears twice`},
		{"ttl missing", strings.Replace(contractExample, "ttl: 30", "", 1), `endpoint "api.dnsplan.test.": ttl 0 outside 1..86400`},
		{"ttl negative", strings.Replace(contractExample, "ttl: 30", "ttl: -1", 1), `endpoint "api.dnsplan.test.": ttl -1 outside 1..86400`},
		{"ttl too large", strings.Replace(contractExample, "ttl: 30", "ttl: 86401", 1), `ttl 86401 outside 1..86400`},
		{"no targets", "zone: dnsplan.test.\nendpoints:\n  - name: api.dnsplan.test.\n    ttl: 30\n", `endpoint "api.dnsplan.test.": no targets`},
		{"too many targets", manyTargets, "1001 targets, limit is 1000"},
		{"target without id", inventoryWith("{address: 192.0.2.1, capacity: 1}"), `endpoint "api.dnsplan.test.": target 0: id must be 1..128 bytes`},
		{"target id too long", inventoryWith("{id: " + strings.Repeat("x", contract.MaxIDLength+1) + ", address: 192.0.2.1, capacity: 1}"), "target 0: id must be 1..128 bytes"},
		{"target twice", inventoryWith("{id: lb-a, address: 192.0.2.1, capacity: 1}\n      - {id: lb-a, address: 192.0.2.2, capacity: 1}"), `target id "lb-a" appears twice`},
		{"address missing", inventoryWith("{id: lb-a, capacity: 1}"), `target "lb-a": address "" is not an IP address`},
		{"address a name", inventoryWith("{id: lb-a, address: lb.example, capacity: 1}"), `target "lb-a": address "lb.example" is not an IP address`},
		{"address out of range", inventoryWith("{id: lb-a, address: 192.0.2.300, capacity: 1}"), `address "192.0.2.300" is not an IP address`},
		{"address unspecified", inventoryWith("{id: lb-a, address: 0.0.0.0, capacity: 1}"), "unspecified"},
		{"address v4-mapped", inventoryWith(`{id: lb-a, address: "::ffff:192.0.2.1", capacity: 1}`), "IPv4-mapped"},
		{"address with zone", inventoryWith(`{id: lb-a, address: "fe80::1%eth0", capacity: 1}`), "has a zone"},
		{"capacity missing", inventoryWith("{id: lb-a, address: 192.0.2.1}"), `target "lb-a": capacity 0 outside 1..4294967295`},
		{"capacity negative", inventoryWith("{id: lb-a, address: 192.0.2.1, capacity: -5}"), "capacity -5 outside"},
		{"capacity too large", inventoryWith("{id: lb-a, address: 192.0.2.1, capacity: 4294967296}"), "capacity 4294967296 outside"},
		{"check scheme", inventoryWith("{id: lb-a, address: 192.0.2.1, capacity: 1, check: ftp://192.0.2.1/}"), `target "lb-a": check "ftp://192.0.2.1/": scheme must be http, https or tcp`},
		{"check bare host", inventoryWith("{id: lb-a, address: 192.0.2.1, capacity: 1, check: 192.0.2.1:80}"), `check "192.0.2.1:80" is not a URL`},
		{"check not a URL", inventoryWith(`{id: lb-a, address: 192.0.2.1, capacity: 1, check: "http://%zz"}`), "is not a URL"},
		{"check http without host", inventoryWith("{id: lb-a, address: 192.0.2.1, capacity: 1, check: \"http:///healthz\"}"), "has no host"},
		{"check tcp without port", inventoryWith("{id: lb-a, address: 192.0.2.1, capacity: 1, check: tcp://192.0.2.1}"), "must be tcp://host:port"},
		{"check tcp port 0", inventoryWith("{id: lb-a, address: 192.0.2.1, capacity: 1, check: tcp://192.0.2.1:0}"), `port "0" outside 1..65535`},
		{"check tcp port too large", inventoryWith("{id: lb-a, address: 192.0.2.1, capacity: 1, check: tcp://192.0.2.1:65536}"), "outside 1..65535"},
		{"check tcp with path", inventoryWith("{id: lb-a, address: 192.0.2.1, capacity: 1, check: tcp://192.0.2.1:80/healthz}"), "nothing after the port"},
		{"one id, two checks", contractExample + `  - name: v6.dnsplan.test.
    ttl: 30
    targets:
      - {id: lb-a, address: "2001:db8::10", capacity: 100, check: "tcp://192.0.2.10:443"}
`, `endpoint "v6.dnsplan.test.": target "lb-a": check "tcp://192.0.2.10:443" differs from "http://192.0.2.10:8080/healthz" in endpoint "api.dnsplan.test."`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := ParseInventory([]byte(tc.in))
			if err == nil {
				t.Fatalf("accepted: %+v", inv)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// An inventory built in code is held to the same rules.
func TestInventoryValidate(t *testing.T) {
	if _, err := (&Inventory{Zone: "dnsplan.test.", Endpoints: []Endpoint{{Name: "api.dnsplan.test.", TTL: 0,
		Targets: []Target{{ID: "a", Address: "192.0.2.1", Capacity: 1}}}}}).Validate(); err == nil || !strings.Contains(err.Error(), "ttl 0") {
		t.Errorf("ttl 0: %v", err)
	}
	var nilInv *Inventory
	if _, err := nilInv.Validate(); err == nil {
		t.Error("a nil inventory validated")
	}
}

func TestParseCheck(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want check
	}{
		{"", check{kind: checkNone}},
		{"http://192.0.2.1:8080/healthz", check{kind: checkHTTP, url: "http://192.0.2.1:8080/healthz"}},
		{"https://lb.example/", check{kind: checkHTTP, url: "https://lb.example/"}},
		{"tcp://192.0.2.1:443", check{kind: checkTCP, addr: "192.0.2.1:443"}},
		{"tcp://[2001:db8::1]:443/", check{kind: checkTCP, addr: "[2001:db8::1]:443"}},
		{"tcp://lb.example:25", check{kind: checkTCP, addr: "lb.example:25"}},
	} {
		got, err := parseCheck(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseCheck(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

// FuzzParseInventory: parsing never panics, and whatever it accepts is
// canonical (validating it again changes nothing) and yields a plan the
// cluster accepts, whatever the health.
func FuzzParseInventory(f *testing.F) {
	f.Add([]byte(contractExample))
	f.Add([]byte(inventoryWith("{id: lb-a, address: 2001:db8::1, capacity: 3, check: tcp://[::1]:1}")))
	f.Add([]byte("zone: a.\nendpoints: [{name: a., ttl: 1, targets: [{id: x, address: 1.2.3.4, capacity: 1}]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := ParseInventory(data)
		if err != nil {
			return
		}
		again, err := inv.Validate()
		if err != nil {
			t.Fatalf("accepted inventory fails Validate: %v", err)
		}
		if !reflect.DeepEqual(again, inv) {
			t.Fatalf("not canonical: %+v became %+v", inv, again)
		}
		for _, healthy := range []bool{true, false} {
			b := buildPlan("fuzz", inv, func(string) (bool, bool) { return healthy, true })
			if err := contract.ValidatePlan(b.plan); err != nil {
				t.Fatalf("healthy=%v: plan refused: %v", healthy, err)
			}
		}
	})
}
