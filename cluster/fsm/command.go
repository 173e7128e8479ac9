package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// CommandType tags a command in the log. Types are only ever appended:
// a number, once used, keeps its meaning forever.
type CommandType uint8

const (
	CommandSubmitPlan   CommandType = 1 // statev1.SubmitPlan
	CommandAcquireLease CommandType = 2 // pb.AcquireLeaseRequest
	CommandRenewLease   CommandType = 3 // pb.RenewLeaseRequest
	CommandReleaseLease CommandType = 4 // pb.ReleaseLeaseRequest
	CommandApplyPlan    CommandType = 5 // pb.ApplyPlanRequest
	CommandCleanupPlans CommandType = 6 // pb.CleanupPlansRequest
	CommandSetFreeze    CommandType = 7 // pb.SetFreezeRequest
	CommandSetMember    CommandType = 8 // statev1.SetMember
	CommandRemoveMember CommandType = 9 // statev1.RemoveMember
	// LEGACY demonstration commands (legacy.go).
	CommandLegacyApply   CommandType = 10 // pb.LegacyApplyRequest
	CommandLegacyCleanup CommandType = 11 // pb.LegacyCleanupRequest
	// The cluster's policy (policy.go).
	CommandFoundCluster CommandType = 12 // pb.ClusterConfig
	CommandSetConfig    CommandType = 13 // pb.SetConfigRequest
)

// newPayload is the one dispatch table from type tag to payload message.
var newPayload = map[CommandType]func() proto.Message{
	CommandSubmitPlan:   func() proto.Message { return &statev1.SubmitPlan{} },
	CommandAcquireLease: func() proto.Message { return &pb.AcquireLeaseRequest{} },
	CommandRenewLease:   func() proto.Message { return &pb.RenewLeaseRequest{} },
	CommandReleaseLease: func() proto.Message { return &pb.ReleaseLeaseRequest{} },
	CommandApplyPlan:    func() proto.Message { return &pb.ApplyPlanRequest{} },
	CommandCleanupPlans: func() proto.Message { return &pb.CleanupPlansRequest{} },
	CommandSetFreeze:    func() proto.Message { return &pb.SetFreezeRequest{} },
	CommandSetMember:    func() proto.Message { return &statev1.SetMember{} },
	CommandRemoveMember: func() proto.Message { return &statev1.RemoveMember{} },

	CommandLegacyApply:   func() proto.Message { return &pb.LegacyApplyRequest{} },
	CommandLegacyCleanup: func() proto.Message { return &pb.LegacyCleanupRequest{} },

	CommandFoundCluster: func() proto.Message { return &pb.ClusterConfig{} },
	CommandSetConfig:    func() proto.Message { return &pb.SetConfigRequest{} },
}

func (t CommandType) String() string {
	switch t {
	case CommandSubmitPlan:
		return "submit_plan"
	case CommandAcquireLease:
		return "acquire_lease"
	case CommandRenewLease:
		return "renew_lease"
	case CommandReleaseLease:
		return "release_lease"
	case CommandApplyPlan:
		return "apply_plan"
	case CommandCleanupPlans:
		return "cleanup_plans"
	case CommandSetFreeze:
		return "set_freeze"
	case CommandSetMember:
		return "set_member"
	case CommandRemoveMember:
		return "remove_member"
	case CommandLegacyApply:
		return "legacy_apply"
	case CommandLegacyCleanup:
		return "legacy_cleanup"
	case CommandFoundCluster:
		return "found_cluster"
	case CommandSetConfig:
		return "set_config"
	}
	return fmt.Sprintf("command_%d", uint8(t))
}

// Command is one log entry: what to do and the time the leader stamped on
// it (LeaderBase plus its monotonic clock). Apply never reads a clock of
// its own.
type Command struct {
	Type    CommandType
	Stamp   time.Time
	Payload proto.Message
}

// headerLen is the type byte plus the stamp in Unix nanoseconds.
const headerLen = 1 + 8

// ErrUndecodable: the bytes are not a command of a known type.
var ErrUndecodable = errors.New("undecodable command")

// Encode lays a command out as [type][stamp, big-endian int64][payload].
func (c Command) Encode() ([]byte, error) {
	if _, ok := newPayload[c.Type]; !ok {
		return nil, fmt.Errorf("%w: unknown type %d", ErrUndecodable, c.Type)
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(c.Payload)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, headerLen, headerLen+len(body))
	buf[0] = byte(c.Type)
	binary.BigEndian.PutUint64(buf[1:], uint64(c.Stamp.UnixNano()))
	return append(buf, body...), nil
}

// Decode is the inverse of Encode. The payload is checked to be of the
// type's message; unknown fields are kept, so newer fields pass through.
func Decode(b []byte) (Command, error) {
	if len(b) < headerLen {
		return Command{}, fmt.Errorf("%w: %d bytes", ErrUndecodable, len(b))
	}
	t := CommandType(b[0])
	mk, ok := newPayload[t]
	if !ok {
		return Command{}, fmt.Errorf("%w: unknown type %d", ErrUndecodable, b[0])
	}
	msg := mk()
	if err := proto.Unmarshal(b[headerLen:], msg); err != nil {
		return Command{}, fmt.Errorf("%w: %s: %v", ErrUndecodable, t, err)
	}
	stamp := time.Unix(0, int64(binary.BigEndian.Uint64(b[1:headerLen]))).UTC()
	return Command{Type: t, Stamp: stamp, Payload: msg}, nil
}
