package fsm

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// sampleCommands has one command of every type, with stamps that exercise
// the encoding: ordinary, far in the past (negative nanoseconds) and the
// largest representable.
func sampleCommands() []Command {
	return []Command{
		{Stamp: t0, Caller: "operator/alice", Payload: &statev1.SubmitPlan{Plan: validPlan(), Force: true}},
		{Stamp: t0.Add(time.Nanosecond), Payload: &pb.AcquireLeaseRequest{Name: "enactor", Holder: "enactor-a", Ttl: durationpb.New(3 * time.Second)}},
		{Stamp: time.Unix(0, -1), Payload: &pb.RenewLeaseRequest{Name: "enactor", Holder: "enactor-a", Token: 2}},
		{Stamp: time.Unix(0, math.MaxInt64), Payload: &pb.ReleaseLeaseRequest{Name: "enactor", Holder: "enactor-a", Token: 2}},
		{Stamp: t0, Caller: "enactor/enactor-a", Payload: &pb.ApplyPlanRequest{Generation: 1, Endpoints: []string{api}, LeaseName: "enactor", LeaseToken: 2, EnactorId: "enactor-a"}},
		{Stamp: t0, Payload: &pb.CleanupPlansRequest{KeepLast: 3}},
		{Stamp: t0, Payload: &pb.SetFreezeRequest{Frozen: true, Reason: "incident"}},
		{Stamp: t0, Payload: &statev1.SetMember{Id: "n1", RaftAddr: "127.0.0.1:7001", GrpcAddr: "127.0.0.1:9001"}},
		{Stamp: t0, Payload: &statev1.RemoveMember{Id: "n1"}},
		{Stamp: t0, Payload: &pb.LegacyApplyRequest{Generation: 1, Endpoint: api, EnactorId: "enactor-a"}},
		{Stamp: t0, Payload: &pb.LegacyCleanupRequest{KeepGenerations: 3}},
		{Stamp: t0, Payload: &pb.ClusterConfig{Design: pb.Design_DESIGN_FIXED, MaxCapacityDrop: 0.25, VelocityWindow: durationpb.New(time.Minute)}},
		{Stamp: t0, Payload: &pb.SetConfigRequest{MaxCapacityDrop: proto.Float64(0), VelocityWindow: durationpb.New(2 * time.Minute)}},
		{Stamp: t0, Caller: "node/n2", Payload: &pb.RecordRefusalsRequest{NodeId: "n2", Refusals: []*pb.Refusal{{Caller: "reader/dash", Method: "SubmitPlan", ReasonCode: "PERMISSION", Reason: "no", Count: 3}}}},
		{Stamp: t0, Caller: "operator/alice", Payload: &pb.RollbackPlanRequest{ToGeneration: 3, Reason: "bad plan", Force: true}},
		{Stamp: t0, Caller: "node/n1", Payload: &statev1.ActivateLog{Version: LogVersion}},
		{Stamp: t0, Caller: "enactor/enactor-a", Payload: &pb.ReportDoubtRequest{Kind: pb.DoubtKind_DOUBT_KIND_READ_BACK, Generation: 2,
			LeaseName: "enactor", LeaseToken: 2, EnactorId: "enactor-a", Nodes: []string{"n2", "n3"}, Endpoints: []string{api}, Detail: "n2 serves 1"}},
	}
}

func TestEncodeDecode(t *testing.T) {
	for _, c := range sampleCommands() {
		t.Run(c.Type().String(), func(t *testing.T) {
			b, err := c.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != byte(c.Type()) || int64(binary.BigEndian.Uint64(b[1:9])) != c.Stamp.UnixNano() {
				t.Fatalf("header % x, want type %d stamp %d", b[:9], c.Type(), c.Stamp.UnixNano())
			}
			d, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if d.Type() != c.Type() || !d.Stamp.Equal(c.Stamp) || d.Stamp.Location() != time.UTC || !proto.Equal(d.Payload, c.Payload) || d.Caller != c.Caller {
				t.Fatalf("Decode(Encode(c)) = %+v, want %+v", d, c)
			}
			b2, err := d.Encode()
			if err != nil || string(b2) != string(b) {
				t.Fatalf("re-encoding differs: %v", err)
			}
		})
	}
}

// TestCallerCannotBeForged: a client that puts the caller's field number
// into its request (kept as an unknown field by the server's decoding)
// does not become the command's caller, with or without a real one.
func TestCallerCannotBeForged(t *testing.T) {
	var forged []byte
	forged = protowire.AppendTag(forged, callerField, protowire.BytesType)
	forged = protowire.AppendString(forged, "operator/mallory")
	for _, caller := range []string{"", "reader/dash"} {
		req := &pb.SetFreezeRequest{Frozen: true}
		req.ProtoReflect().SetUnknown(forged)
		b, err := Command{Stamp: t0, Payload: req, Caller: caller}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		d, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if d.Caller != caller {
			t.Errorf("caller %q decoded as %q", caller, d.Caller)
		}
		if len(req.ProtoReflect().GetUnknown()) == 0 {
			t.Error("Encode changed the caller's payload")
		}
	}
}

// TestCallerPassesAnOlderVersion: a node whose version predates the caller
// decodes it as an unknown field of the payload and re-encodes it (as a
// snapshot or a forwarded entry would), and a newer node reads it back.
func TestCallerPassesAnOlderVersion(t *testing.T) {
	b, err := Command{Stamp: t0, Payload: &pb.CleanupPlansRequest{KeepLast: 2}, Caller: "enactor/az-a"}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var old pb.CleanupPlansRequest // what a version without the caller decodes
	if err := proto.Unmarshal(b[headerLen:], &old); err != nil || old.KeepLast != 2 {
		t.Fatalf("older decoding: %v %v", &old, err)
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(&old)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Decode(append(b[:headerLen:headerLen], body...))
	if err != nil || d.Caller != "enactor/az-a" {
		t.Fatalf("caller %q, %v", d.Caller, err)
	}
}

// TestDecodeKeepsUnknownFields: a payload field this version does not know
// passes through Decode and Encode unchanged.
func TestDecodeKeepsUnknownFields(t *testing.T) {
	b, err := Command{Stamp: t0, Payload: &pb.CleanupPlansRequest{KeepLast: 2}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	b = protowire.AppendTag(b, 99, protowire.VarintType)
	b = protowire.AppendVarint(b, 7)
	d, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if d.Payload.(*pb.CleanupPlansRequest).KeepLast != 2 || len(d.Payload.ProtoReflect().GetUnknown()) == 0 {
		t.Fatalf("decoded %v", d.Payload)
	}
	if b2, _ := d.Encode(); string(b2) != string(b) {
		t.Fatalf("unknown field lost in re-encoding")
	}
}

func TestDecodeErrors(t *testing.T) {
	valid, err := Command{Stamp: t0, Payload: &pb.SetFreezeRequest{}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	withType := func(typ byte) []byte { b := append([]byte(nil), valid...); b[0] = typ; return b }
	tests := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"type only", []byte{byte(CommandSetFreeze)}},
		{"short header", valid[:headerLen-1]},
		{"type 0", withType(0)},
		{"type after the last", withType(byte(lastCommand) + 1)},
		{"type 255", withType(255)},
		{"truncated varint", append(append([]byte(nil), valid[:headerLen]...), 0x08)},
		{"bad wire type", append(append([]byte(nil), valid[:headerLen]...), 0x0f)},
		{"length past the end", append(withType(byte(CommandSubmitPlan)), 0x0a, 0x10)},
		{"invalid UTF-8 string", append(withType(byte(CommandRemoveMember)), 0x0a, 0x01, 0xff)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Decode(tc.in)
			if !errors.Is(err, ErrUndecodable) {
				t.Fatalf("Decode = %+v, %v; want ErrUndecodable", c, err)
			}
		})
	}
	// An empty payload is a valid command of that type with every field zero.
	if c, err := Decode(valid[:headerLen]); err != nil || c.Type() != CommandSetFreeze {
		t.Fatalf("header only: %+v, %v", c, err)
	}
}

// TestEncodeNonCommand: a payload that is no command's (a public plan
// where SubmitPlan belongs, a response, nothing) cannot be encoded, so it
// cannot be proposed.
func TestEncodeNonCommand(t *testing.T) {
	for _, p := range []proto.Message{nil, validPlan(), &pb.ApplyPlanResponse{}, &pb.StatusRequest{}} {
		c := Command{Stamp: t0, Payload: p}
		if _, err := c.Encode(); !errors.Is(err, ErrUndecodable) {
			t.Errorf("Encode of %T: %v, want ErrUndecodable", p, err)
		}
		if c.Type() != 0 {
			t.Errorf("Type of %T = %s, want 0", p, c.Type())
		}
		if err := Validate(p); !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate of %T: %v, want ErrInvalid", p, err)
		}
	}
}

func TestCommandTypeString(t *testing.T) {
	want := map[CommandType]string{
		CommandSubmitPlan: "submit_plan", CommandAcquireLease: "acquire_lease", CommandRenewLease: "renew_lease",
		CommandReleaseLease: "release_lease", CommandApplyPlan: "apply_plan", CommandCleanupPlans: "cleanup_plans",
		CommandSetFreeze: "set_freeze", CommandSetMember: "set_member", CommandRemoveMember: "remove_member",
		CommandLegacyApply: "legacy_apply", CommandLegacyCleanup: "legacy_cleanup",
		CommandFoundCluster: "found_cluster", CommandSetConfig: "set_config", CommandRecordRefusals: "record_refusals",
		CommandRollbackPlan: "rollback_plan", CommandActivateLog: "activate_log", CommandReportDoubt: "report_doubt",
		42: "command_42",
	}
	for typ, s := range want {
		if typ.String() != s {
			t.Errorf("%d.String() = %q, want %q", typ, typ.String(), s)
		}
	}
	// The numbers are part of the log format: they must never change.
	for i, c := range sampleCommands() {
		if c.Type() != CommandType(i+1) {
			t.Errorf("%s has number %d, want %d", c.Type(), c.Type(), i+1)
		}
	}
}
