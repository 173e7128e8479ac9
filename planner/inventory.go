package planner

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/dnsplan/dnsplan/contract"
)

// MaxInventoryBytes bounds the inventory file. A plan is at most
// contract.MaxPlanBytes; an inventory far larger than that cannot produce one.
const MaxInventoryBytes = 16 << 20

// Inventory is the planner's input (docs/CONTRACT.md, "Inventory file"): the
// endpoints of one zone and the load-balancer targets behind each. An
// Inventory returned by ParseInventory or LoadInventory is valid and
// canonical: names lower case, addresses in their canonical form,
// endpoints sorted by name and targets by id, so that plans built from it
// are the same bytes whatever order the file listed things in.
type Inventory struct {
	Zone      string
	Endpoints []Endpoint
}

// Endpoint is one DNS name and the targets that share its traffic.
type Endpoint struct {
	// Name is a fully qualified name inside the zone, ending in a dot.
	Name string
	// TTL of the records, 1..86400 seconds.
	TTL     uint32
	Targets []Target
	// MinHealthy and MinHealthyFraction: the fewest targets the endpoint
	// serves, as a number and as a fraction of its targets (the larger
	// applies; 0: none). The plan carries them, so the cluster refuses a
	// plan below them; below them, the planner fails open (buildPlan).
	MinHealthy         uint32
	MinHealthyFraction float64
}

// Target is one load balancer behind an endpoint.
type Target struct {
	// ID names the load balancer. The same id may serve several endpoints
	// (for example with an IPv4 and an IPv6 address); it is one machine
	// with one health, so every use must name the same Check.
	ID      string
	Address string
	// Capacity is the target's weight while healthy, 1..2^32-1.
	Capacity uint32
	// Check is how health is probed: http://… or https://… (healthy on
	// 2xx), tcp://host:port (healthy when a connection opens), or empty
	// (always healthy).
	Check string
}

// The file's shape. Numbers are decoded as int64 so that a negative or
// oversized TTL or capacity is reported with the endpoint and target it
// belongs to, rather than as a bare YAML type error.
type inventoryFile struct {
	Zone      string         `yaml:"zone"`
	Endpoints []endpointFile `yaml:"endpoints"`
}

type endpointFile struct {
	Name               string       `yaml:"name"`
	TTL                int64        `yaml:"ttl"`
	Targets            []targetFile `yaml:"targets"`
	MinHealthy         int64        `yaml:"min_healthy"`
	MinHealthyFraction float64      `yaml:"min_healthy_fraction"`
}

type targetFile struct {
	ID       string `yaml:"id"`
	Address  string `yaml:"address"`
	Capacity int64  `yaml:"capacity"`
	Check    string `yaml:"check"`
}

// LoadInventory reads and validates the inventory file at path.
func LoadInventory(path string) (*Inventory, error) {
	data, err := readInventoryFile(path)
	if err != nil {
		return nil, err
	}
	inv, err := ParseInventory(data)
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w", path, err)
	}
	return inv, nil
}

func readInventoryFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxInventoryBytes+1))
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w", path, err)
	}
	if len(data) > MaxInventoryBytes {
		return nil, fmt.Errorf("inventory %s: larger than %d bytes", path, MaxInventoryBytes)
	}
	return data, nil
}

// ParseInventory decodes and validates an inventory in YAML. Unknown
// fields are errors, so a misspelt key ("capacty") is not silently
// ignored. Every error names the endpoint and target it is about.
func ParseInventory(data []byte) (*Inventory, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f inventoryFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("inventory is empty")
		}
		return nil, fmt.Errorf("inventory is not valid YAML of the expected shape: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("inventory holds more than one YAML document")
	}
	return f.validate()
}

// Validate checks an inventory built in code the way ParseInventory checks
// a file, and returns its canonical form.
func (inv *Inventory) Validate() (*Inventory, error) {
	if inv == nil {
		return nil, errors.New("no inventory")
	}
	f := inventoryFile{Zone: inv.Zone}
	for _, ep := range inv.Endpoints {
		fe := endpointFile{Name: ep.Name, TTL: int64(ep.TTL), MinHealthy: int64(ep.MinHealthy), MinHealthyFraction: ep.MinHealthyFraction}
		for _, t := range ep.Targets {
			fe.Targets = append(fe.Targets, targetFile{ID: t.ID, Address: t.Address, Capacity: int64(t.Capacity), Check: t.Check})
		}
		f.Endpoints = append(f.Endpoints, fe)
	}
	return f.validate()
}

// validate is the one set of inventory rules. What a plan must be is the
// cluster's rule (contract.ValidateEndpoint, then contract.ValidatePlan
// for the whole), not repeated here, so an inventory that loads always
// yields plans the cluster accepts; what is checked here is the
// inventory's own: the zone, capacities, health checks, and that a YAML
// number fits the field it fills.
func (f *inventoryFile) validate() (*Inventory, error) {
	if f.Zone == "" {
		return nil, errors.New("zone is required")
	}
	if err := contract.ValidateName(f.Zone); err != nil {
		return nil, fmt.Errorf("zone: %v", err)
	}
	inv := &Inventory{Zone: contract.CanonicalName(f.Zone)}
	if len(f.Endpoints) == 0 {
		return nil, errors.New("no endpoints")
	}
	// checks remembers, per target id, the check and endpoint of its
	// first use, to refuse one id probed two ways.
	type use struct{ check, endpoint string }
	checks := map[string]use{}
	for i, fe := range f.Endpoints {
		if fe.Name == "" {
			return nil, fmt.Errorf("endpoint %d: name is required", i+1)
		}
		if err := contract.ValidateName(fe.Name); err != nil {
			return nil, fmt.Errorf("endpoint %d: %v", i+1, err)
		}
		name := contract.CanonicalName(fe.Name)
		if name != inv.Zone && !strings.HasSuffix(name, "."+inv.Zone) {
			return nil, fmt.Errorf("endpoint %q is not inside zone %q", name, inv.Zone)
		}
		if fe.TTL < 0 || fe.TTL > math.MaxUint32 {
			return nil, fmt.Errorf("endpoint %q: ttl %d outside 1..%d", name, fe.TTL, contract.MaxTTL)
		}
		if fe.MinHealthy < 0 || fe.MinHealthy > int64(contract.MaxTargetsPerEndpoint) {
			return nil, fmt.Errorf("endpoint %q: min_healthy %d outside 0..%d", name, fe.MinHealthy, contract.MaxTargetsPerEndpoint)
		}
		ep := Endpoint{Name: name, TTL: uint32(fe.TTL), MinHealthy: uint32(fe.MinHealthy), MinHealthyFraction: fe.MinHealthyFraction}
		for _, ft := range fe.Targets {
			addr, err := contract.ParseAddress(ft.Address)
			if err != nil {
				return nil, fmt.Errorf("endpoint %q: target %q: %v", name, ft.ID, err)
			}
			if ft.Capacity < 1 || ft.Capacity > math.MaxUint32 {
				return nil, fmt.Errorf("endpoint %q: target %q: capacity %d outside 1..%d", name, ft.ID, ft.Capacity, uint32(math.MaxUint32))
			}
			if _, err := parseCheck(ft.Check); err != nil {
				return nil, fmt.Errorf("endpoint %q: target %q: %v", name, ft.ID, err)
			}
			if u, ok := checks[ft.ID]; ok && u.check != ft.Check {
				return nil, fmt.Errorf("endpoint %q: target %q: check %q differs from %q in endpoint %q; a target id names one load balancer with one health check",
					name, ft.ID, ft.Check, u.check, u.endpoint)
			}
			checks[ft.ID] = use{ft.Check, name}
			ep.Targets = append(ep.Targets, Target{ID: ft.ID, Address: addr.String(), Capacity: uint32(ft.Capacity), Check: ft.Check})
		}
		one := buildPlan("planner", &Inventory{Endpoints: []Endpoint{ep}}, allHealthy).plan
		if err := contract.ValidateEndpoint(one.Endpoints[0]); err != nil {
			return nil, unwrapInvalid(err)
		}
		slices.SortFunc(ep.Targets, func(a, b Target) int { return strings.Compare(a.ID, b.ID) })
		inv.Endpoints = append(inv.Endpoints, ep)
	}
	slices.SortFunc(inv.Endpoints, func(a, b Endpoint) int { return strings.Compare(a.Name, b.Name) })
	// The last word is the cluster's: the plan with every target healthy
	// (the largest this inventory yields) must pass its validation, which
	// also refuses an endpoint listed twice and bounds the encoded size.
	if err := contract.ValidatePlan(buildPlan("planner", inv, allHealthy).plan); err != nil {
		return nil, unwrapInvalid(err)
	}
	return inv, nil
}

// unwrapInvalid drops the "invalid: " the contract's errors start with:
// an inventory error is already a refusal to load.
func unwrapInvalid(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), contract.ErrInvalid.Error()+": "))
}

func allHealthy(string) (healthy, known bool) { return true, true }

// checkKind is how a target's health is probed.
type checkKind int

const (
	checkNone checkKind = iota // always healthy
	checkHTTP                  // GET, healthy on 2xx
	checkTCP                   // healthy when a connection opens
)

// check is a parsed Target.Check.
type check struct {
	kind checkKind
	url  string // checkHTTP: the URL to GET
	addr string // checkTCP: host:port to dial
}

// parseCheck reads a check: empty, http://…, https://… or tcp://host:port.
func parseCheck(s string) (check, error) {
	if s == "" {
		return check{kind: checkNone}, nil
	}
	u, err := url.Parse(s)
	if err != nil || !strings.Contains(s, "://") {
		return check{}, fmt.Errorf("check %q is not a URL (http://…, https://… or tcp://host:port)", s)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Hostname() == "" {
			return check{}, fmt.Errorf("check %q has no host", s)
		}
		return check{kind: checkHTTP, url: s}, nil
	case "tcp":
		if u.Hostname() == "" || u.Port() == "" {
			return check{}, fmt.Errorf("check %q must be tcp://host:port", s)
		}
		if port, err := strconv.ParseUint(u.Port(), 10, 16); err != nil || port == 0 {
			return check{}, fmt.Errorf("check %q: port %q outside 1..65535", s, u.Port())
		}
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return check{}, fmt.Errorf("check %q must be tcp://host:port, with nothing after the port", s)
		}
		return check{kind: checkTCP, addr: net.JoinHostPort(u.Hostname(), u.Port())}, nil
	}
	return check{}, fmt.Errorf("check %q: scheme must be http, https or tcp", s)
}

// targetIDs returns every distinct target id of the inventory with its
// check (the same for every use, as validate ensures).
func (inv *Inventory) targetIDs() map[string]string {
	out := map[string]string{}
	for _, ep := range inv.Endpoints {
		for _, t := range ep.Targets {
			out[t.ID] = t.Check
		}
	}
	return out
}
