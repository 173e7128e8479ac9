package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/client"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// dnsNames is how many names the DNS figure serves, four A records each.
const dnsNames = 1000

// pollTXT queries name TXT at server over UDP until an answer holds want,
// or timeout passes.
func pollTXT(ctx context.Context, server, name, want string, timeout time.Duration) error {
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeTXT)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		r, _, err := c.ExchangeContext(ctx, m, server)
		if err == nil {
			for _, rr := range r.Answer {
				if t, ok := rr.(*dns.TXT); ok && strings.Contains(strings.Join(t.Txt, "")+" ", want) {
					return nil
				}
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	return fmt.Errorf("%s at %s: no %q within %s", name, server, want, timeout)
}

// servesAll reports whether server answers the last name with its four A
// records: the zone is loaded (or the plan applied) in full.
func servesAll(server string) bool {
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion(endpointName(dnsNames-1), dns.TypeA)
	r, _, err := c.Exchange(m, server)
	return err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 4
}

// zoneFile is the peers' zone, written from the same data as dnsplan's
// plan: the SOA, an NS with its address (BIND refuses a zone whose
// in-zone NS has none), and each endpoint's four A records.
func zoneFile() string {
	var b strings.Builder
	fmt.Fprintf(&b, "$ORIGIN %s\n$TTL 300\n", benchZone)
	fmt.Fprintf(&b, "@ IN SOA ns1.%s hostmaster.%s 1 3600 600 604800 300\n", benchZone, benchZone)
	fmt.Fprintf(&b, "@ IN NS ns1.%s\nns1 IN A 127.0.0.1\n", benchZone)
	for i := range dnsNames {
		for _, a := range endpointAddrs(i) {
			fmt.Fprintf(&b, "%s 300 IN A %s\n", endpointName(i), a)
		}
	}
	return b.String()
}

// queryFile is dnsperf's input: each name's A question once.
func queryFile() string {
	var b strings.Builder
	for i := range dnsNames {
		fmt.Fprintf(&b, "%s A\n", endpointName(i))
	}
	return b.String()
}

// dnsServer is one authoritative server under the DNS figure.
type dnsServer struct {
	Name    string
	Version string
	// start runs the server pinned to cpus, listening on port, in dir.
	start func(ctx context.Context, ps *procs, dir, cpus string, port int) (*proc, error)
}

// dnsplanDNS runs a one-node dnsplan cluster (a node with no
// --initial-cluster founds one) and applies one plan of every name: its
// DNS server answers from that replica. DNS response rate limiting is
// off (a rate too high to reach), as it is by default in the peers: every
// dnsperf query comes from one address.
func dnsplanDNS(bin string) dnsServer {
	return dnsServer{Name: "dnsplan", start: func(ctx context.Context, ps *procs, dir, cpus string, port int) (*proc, error) {
		if err := waitFree(port+1, port+2, port+3); err != nil {
			return nil, err
		}
		args := append(dnsplanNodeArgs(bin, dir, "dns1", port+1, port+2, port, port+3), "--dns-rate-limit", "1e9")
		p, err := ps.start("dnsplan dns1", cpus, filepath.Join(dir, "dns1.log"), args...)
		if err != nil {
			return nil, err
		}
		cl, err := client.New([]string{addr(port + 2)})
		if err != nil {
			return p, err
		}
		defer cl.Close()
		if err := waitFor("dnsplan dns1 leader", 30*time.Second, func() bool {
			st, err := cl.Status(ctx)
			return err == nil && st.GetState() == "Leader"
		}); err != nil {
			return p, err
		}
		r, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: benchPlan(dnsNames)})
		if err != nil {
			return p, fmt.Errorf("submit: %w", err)
		}
		l, err := cl.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "bench", Holder: "bench", Ttl: durationpb.New(time.Hour)})
		if err != nil {
			return p, fmt.Errorf("lease: %w", err)
		}
		if _, err := cl.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: r.GetGeneration(), LeaseName: l.GetName(),
			LeaseToken: l.GetToken(), EnactorId: l.GetHolder()}); err != nil {
			return p, fmt.Errorf("apply: %w", err)
		}
		return p, nil
	}}
}

// knotDNS, nsdDNS and bindDNS run the peers with their defaults but the
// listening address, the files' places and logging to stderr.
func knotDNS() dnsServer {
	return dnsServer{Name: "Knot", Version: versionOf("knotd", "--version"), start: func(ctx context.Context, ps *procs, dir, cpus string, port int) (*proc, error) {
		conf := fmt.Sprintf(`server:
    rundir: "%[1]s"
    listen: 127.0.0.1@%[2]d
control:
    listen: "%[1]s/knot.sock"
log:
  - target: stderr
    any: warning
database:
    storage: "%[1]s"
template:
  - id: default
    storage: "%[1]s"
zone:
  - domain: %[3]s
    file: "%[1]s/zone"
`, dir, port, benchZone)
		if err := os.WriteFile(filepath.Join(dir, "knot.conf"), []byte(conf), 0o644); err != nil {
			return nil, err
		}
		return ps.start("knotd", cpus, filepath.Join(dir, "server.log"), "knotd", "-c", filepath.Join(dir, "knot.conf"))
	}}
}

func nsdDNS() dnsServer {
	return dnsServer{Name: "NSD", Version: versionOf("nsd", "-v"), start: func(ctx context.Context, ps *procs, dir, cpus string, port int) (*proc, error) {
		conf := fmt.Sprintf(`server:
    ip-address: 127.0.0.1@%[2]d
    username: ""
    chroot: ""
    zonesdir: "%[1]s"
    database: ""
    zonelistfile: "%[1]s/zone.list"
    xfrdfile: "%[1]s/xfrd.state"
    pidfile: "%[1]s/nsd.pid"
    do-ip6: no
remote-control:
    control-enable: no
zone:
    name: %[3]s
    zonefile: "%[1]s/zone"
`, dir, port, benchZone)
		if err := os.WriteFile(filepath.Join(dir, "nsd.conf"), []byte(conf), 0o644); err != nil {
			return nil, err
		}
		return ps.start("nsd", cpus, filepath.Join(dir, "server.log"), "nsd", "-d", "-c", filepath.Join(dir, "nsd.conf"))
	}}
}

func bindDNS() dnsServer {
	return dnsServer{Name: "BIND9", Version: versionOf("named", "-v"), start: func(ctx context.Context, ps *procs, dir, cpus string, port int) (*proc, error) {
		conf := fmt.Sprintf(`options {
    directory "%[1]s";
    listen-on port %[2]d { 127.0.0.1; };
    listen-on-v6 { none; };
    pid-file "%[1]s/named.pid";
    session-keyfile "%[1]s/session.key";
    recursion no;
};
controls { };
zone "%[3]s" { type primary; file "%[1]s/zone"; };
`, dir, port, benchZone)
		if err := os.WriteFile(filepath.Join(dir, "named.conf"), []byte(conf), 0o644); err != nil {
			return nil, err
		}
		return ps.start("named", cpus, filepath.Join(dir, "server.log"), "named", "-g", "-c", filepath.Join(dir, "named.conf"))
	}}
}

// dnsResult is one server's dnsperf run.
type dnsResult struct {
	Server  string
	Version string
	QPS     float64
	Lost    string
	Codes   string
	Err     error
}

var (
	qpsRE   = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	lostRE  = regexp.MustCompile(`Queries lost:\s+(.*)`)
	codesRE = regexp.MustCompile(`Response codes:\s+(.*)`)
)

// runDNS starts s pinned to serverCPU, waits until it serves every name,
// and loads it with dnsperf pinned to loadCPU for d.
func runDNS(ctx context.Context, ps *procs, s dnsServer, dir, serverCPU, loadCPU string, port int, d time.Duration) dnsResult {
	res := dnsResult{Server: s.Name, Version: s.Version}
	if err := waitFree(port); err != nil {
		res.Err = err
		return res
	}
	sdir := filepath.Join(dir, strings.ToLower(s.Name))
	if err := os.MkdirAll(sdir, 0o755); err != nil {
		res.Err = err
		return res
	}
	if err := os.WriteFile(filepath.Join(sdir, "zone"), []byte(zoneFile()), 0o644); err != nil {
		res.Err = err
		return res
	}
	queries := filepath.Join(dir, "queries.txt")
	if err := os.WriteFile(queries, []byte(queryFile()), 0o644); err != nil {
		res.Err = err
		return res
	}
	p, err := s.start(ctx, ps, sdir, serverCPU, port)
	if p != nil {
		defer p.kill(syscall.SIGTERM)
	}
	if err == nil {
		err = waitFor(s.Name+" serving every name", 30*time.Second, func() bool {
			if done, _ := p.exited(); done {
				return true
			}
			return servesAll(addr(port))
		})
		if done, perr := p.exited(); done {
			err = fmt.Errorf("%s exited (%v): see %s", s.Name, perr, filepath.Join(sdir, "server.log"))
		}
	}
	if err != nil {
		res.Err = err
		return res
	}
	// dnsperf: one thread, 8 sockets, up to 500 queries outstanding, for
	// d; it stops by itself (-l).
	cmd := exec.CommandContext(ctx, "taskset", "-c", loadCPU, "dnsperf", "-s", "127.0.0.1", "-p", strconv.Itoa(port),
		"-d", queries, "-l", strconv.Itoa(int(d.Seconds())), "-T", "1", "-c", "8", "-q", "500")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		res.Err = fmt.Errorf("dnsperf: %w: %s", err, out.String())
		return res
	}
	m := qpsRE.FindStringSubmatch(out.String())
	if m == nil {
		res.Err = fmt.Errorf("dnsperf printed no rate: %s", out.String())
		return res
	}
	res.QPS, _ = strconv.ParseFloat(m[1], 64)
	if m := lostRE.FindStringSubmatch(out.String()); m != nil {
		res.Lost = strings.TrimSpace(m[1])
	}
	if m := codesRE.FindStringSubmatch(out.String()); m != nil {
		res.Codes = strings.TrimSpace(m[1])
	}
	return res
}

// versionOf is the first line a command prints about its version.
func versionOf(argv ...string) string {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "not installed"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
