package main

import (
	"io"
	"slices"
	"testing"
)

func TestEnvironmentFillsFlagsAndFlagsWin(t *testing.T) {
	t.Setenv("DNSPLAN_GRPC_ADDR", "127.0.0.1:9999")
	t.Setenv("DNSPLAN_ID", "from-env")
	t.Setenv("DNSPLAN_ZONE", "a.test.,b.test.")
	fs := newFlagSet("x", io.Discard)
	id := fs.String("id", "", "")
	grpcAddr := fs.String("grpc-addr", "127.0.0.1:9001", "")
	zones := newListFlag("dnsplan.test.")
	fs.Var(zones, "zone", "")
	if err := parseFlags(fs, []string{"--id", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	if *id != "from-flag" {
		t.Errorf("id = %q: the flag must override DNSPLAN_ID", *id)
	}
	if *grpcAddr != "127.0.0.1:9999" {
		t.Errorf("grpc-addr = %q, want the DNSPLAN_GRPC_ADDR value", *grpcAddr)
	}
	if !slices.Equal(zones.values, []string{"a.test.", "b.test."}) {
		t.Errorf("zones = %v", zones.values)
	}
}

func TestBadEnvironmentValueIsAnError(t *testing.T) {
	t.Setenv("DNSPLAN_MAX_CAPACITY_DROP", "lots")
	fs := newFlagSet("x", io.Discard)
	fs.Float64("max-capacity-drop", 0.5, "")
	if err := parseFlags(fs, nil); err == nil {
		t.Fatal("a malformed DNSPLAN_ value was accepted")
	}
}

func TestParseInitialCluster(t *testing.T) {
	peers, err := parseInitialCluster("node1=node1:7001, node2=10.0.0.2:7001")
	if err != nil || len(peers) != 2 || peers[1].ID != "node2" || peers[1].RaftAddr != "10.0.0.2:7001" {
		t.Fatalf("parse = %v, %v", peers, err)
	}
	for _, bad := range []string{"node1", "=a:1", "node1=", "a=b:1,,"} {
		if _, err := parseInitialCluster(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestForceIsNeverReadFromTheEnvironment: DNSPLAN_FORCE left set must not
// force every later submission.
func TestForceIsNeverReadFromTheEnvironment(t *testing.T) {
	t.Setenv("DNSPLAN_FORCE", "true")
	fs := newFlagSet("submit", io.Discard)
	force := fs.Bool("force", false, "")
	if err := parseFlags(fs, nil); err != nil {
		t.Fatal(err)
	}
	if *force {
		t.Fatal("DNSPLAN_FORCE=true forced the command")
	}
	if err := parseFlags(fs, []string{"--force"}); err != nil || !*force {
		t.Fatalf("--force on the command line: %v, force %v", err, *force)
	}
}
