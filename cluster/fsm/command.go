package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/dnsplan/dnsplan/contract"
	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// CommandType tags a command in the log. Types are only ever appended:
// a number, once used, keeps its meaning forever.
type CommandType uint8

const (
	CommandSubmitPlan   CommandType = 1
	CommandAcquireLease CommandType = 2
	CommandRenewLease   CommandType = 3
	CommandReleaseLease CommandType = 4
	CommandApplyPlan    CommandType = 5
	CommandCleanupPlans CommandType = 6
	CommandSetFreeze    CommandType = 7
	CommandSetMember    CommandType = 8
	CommandRemoveMember CommandType = 9
	// LEGACY demonstration commands (legacy.go).
	CommandLegacyApply   CommandType = 10
	CommandLegacyCleanup CommandType = 11
	// The cluster's policy (policy.go).
	CommandFoundCluster CommandType = 12
	CommandSetConfig    CommandType = 13
	// The calls nodes refused at their edge, for the audit history.
	CommandRecordRefusals CommandType = 14
	// Rollback (rollback.go).
	CommandRollbackPlan CommandType = 15
	// The active log version (version.go).
	CommandActivateLog CommandType = 16
	// An enactor's report of doubt (doubt.go).
	CommandReportDoubt CommandType = 17
)

// lastCommand is the highest command type this version applies.
const lastCommand = CommandReportDoubt

// commands is the command table: one entry per command type, with
// everything the state machine knows about it. Encode, Decode, Apply,
// Validate and String are driven by it. Adding a command is one entry
// here, its payload message, its validation and its rule.
var commands = []command{
	def(CommandSubmitPlan, "submit_plan", kindSubmit, validateSubmit, (*State).submitPlan),
	def(CommandAcquireLease, "acquire_lease", kindAcquire, validateAcquire, (*State).acquireLease),
	def(CommandRenewLease, "renew_lease", kindRenew, validateRenew, (*State).renewLease),
	def(CommandReleaseLease, "release_lease", kindRelease, validateRelease, (*State).releaseLease),
	def(CommandApplyPlan, "apply_plan", kindApply, contract.ValidateApplyRequest, (*State).applyPlan),
	def(CommandCleanupPlans, "cleanup_plans", kindCleanup, validateCleanup, (*State).cleanupPlans),
	def(CommandSetFreeze, "set_freeze", kindFreeze, contract.ValidateFreezeRequest, (*State).setFreeze),
	def(CommandSetMember, "set_member", kindMember, validateSetMember, (*State).setMember),
	def(CommandRemoveMember, "remove_member", kindMember, validateRemoveMember, (*State).removeMember),
	def(CommandLegacyApply, "legacy_apply", kindLegacyApply, validateLegacyApply, (*State).legacyApply),
	def(CommandLegacyCleanup, "legacy_cleanup", kindLegacyCleanup, validateLegacyCleanup, (*State).legacyCleanup),
	def(CommandFoundCluster, "found_cluster", kindConfig, ValidateConfig, (*State).foundCluster),
	def(CommandSetConfig, "set_config", kindConfig, ValidateSetConfig, (*State).setConfig),
	def(CommandRecordRefusals, "record_refusals", kindRefusedCall, validateRefusals, (*State).recordRefusals),
	def(CommandRollbackPlan, "rollback_plan", kindRollback, validateRollback, (*State).rollbackPlan),
	def(CommandActivateLog, "activate_log", kindConfig, validateActivate, (*State).activateLog),
	def(CommandReportDoubt, "report_doubt", kindDoubt, contract.ValidateReportDoubt, (*State).reportDoubt),
}

// command is one entry of the table. The payload's message type is
// derived from the rule's signature, so a tag can never disagree with its
// payload: a command's type is looked up from its payload.
type command struct {
	tag  CommandType
	name string
	// kind names the command in the audit history; invalid input is
	// recorded under it without any of its (unbounded, untrusted) fields.
	kind     pb.HistoryKind
	message  protoreflect.MessageType
	validate func(proto.Message) error
	rule     func(*State, uint64, proto.Message) Result
}

func def[P proto.Message](tag CommandType, name string, kind pb.HistoryKind, validate func(P) error, rule func(*State, uint64, P) Result) command {
	var zero P
	return command{
		tag:      tag,
		name:     name,
		kind:     kind,
		message:  zero.ProtoReflect().Type(),
		validate: func(m proto.Message) error { return validate(m.(P)) },
		rule:     func(s *State, i uint64, m proto.Message) Result { return rule(s, i, m.(P)) },
	}
}

// byTag and byMessage index the table; built once, checked for
// duplicates (a programming error, caught by every test run).
var byTag, byMessage = index(commands)

func index(cs []command) (map[CommandType]*command, map[protoreflect.FullName]*command) {
	tags := make(map[CommandType]*command, len(cs))
	msgs := make(map[protoreflect.FullName]*command, len(cs))
	for i := range cs {
		c := &cs[i]
		name := c.message.Descriptor().FullName()
		if tags[c.tag] != nil || msgs[name] != nil {
			panic(fmt.Sprintf("fsm: command table lists %s (%d, %s) twice", c.name, c.tag, name))
		}
		tags[c.tag], msgs[name] = c, c
	}
	return tags, msgs
}

// lookup finds the table entry for a payload; nil if it is no command's.
func lookup(p proto.Message) *command {
	if p == nil {
		return nil
	}
	return byMessage[p.ProtoReflect().Descriptor().FullName()]
}

func (t CommandType) String() string {
	if c := byTag[t]; c != nil {
		return c.name
	}
	return fmt.Sprintf("command_%d", uint8(t))
}

// Command is one log entry: the payload (whose message type says which
// command it is), the time the leader stamped on it (LeaderStamp), and
// who asked for it. Apply never reads a clock of its own.
type Command struct {
	Stamp   time.Time
	Payload proto.Message
	// Caller is the identity of the client whose call proposed the
	// command ("enactor/az-a"), as the node that authorized the call
	// verified it; empty without TLS. The audit history records it.
	Caller string
}

// Type is the command's tag, derived from its payload; 0 if the payload is
// no command's.
func (c Command) Type() CommandType {
	if e := lookup(c.Payload); e != nil {
		return e.tag
	}
	return 0
}

// Validate checks a command payload's own fields (not its permission,
// which only Apply can judge against the state). Apply runs it first on
// every replica; the API edge runs the same function to answer early.
func Validate(p proto.Message) error {
	e := lookup(p)
	if e == nil {
		return fmt.Errorf("%w: %T is not a command", ErrInvalid, p)
	}
	return e.validate(p)
}

// headerLen is the type byte plus the stamp in Unix nanoseconds.
const headerLen = 1 + 8

// ErrUndecodable: the bytes are not a command of a known type.
var ErrUndecodable = errors.New("undecodable command")

// callerField is the field number under which the caller travels inside
// the payload's encoding. No payload message defines it, so a node whose
// version predates it keeps it as an unknown field and ignores it, as it
// does any new field (cluster/DESIGN.md, "Rolling upgrades"): the entry
// format stays [type][stamp][payload]. It is far above any field a
// payload message will ever number.
const callerField protowire.Number = 1 << 24

// Encode lays a command out as [type][stamp, big-endian int64][payload],
// the caller appended to the payload as field callerField.
func (c Command) Encode() ([]byte, error) {
	e := lookup(c.Payload)
	if e == nil {
		return nil, fmt.Errorf("%w: %T is not a command", ErrUndecodable, c.Payload)
	}
	// A payload that came from a client keeps the unknown fields the
	// client sent; one of them must not pass for the caller.
	payload := c.Payload
	if unknown := payload.ProtoReflect().GetUnknown(); len(unknown) > 0 {
		payload = proto.Clone(payload)
		payload.ProtoReflect().SetUnknown(withoutField(unknown, callerField))
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(payload)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, headerLen, headerLen+len(body)+len(c.Caller)+8)
	buf[0] = byte(e.tag)
	binary.BigEndian.PutUint64(buf[1:], uint64(c.Stamp.UnixNano()))
	buf = append(buf, body...)
	if c.Caller != "" {
		buf = protowire.AppendTag(buf, callerField, protowire.BytesType)
		buf = protowire.AppendString(buf, c.Caller)
	}
	return buf, nil
}

// withoutField is b, a run of encoded fields, without those numbered num.
// Malformed input is returned as it is (it cannot hold a well-formed
// field num to drop).
func withoutField(b []byte, num protowire.Number) []byte {
	out := make([]byte, 0, len(b))
	for rest := b; len(rest) > 0; {
		n, typ, tagLen := protowire.ConsumeTag(rest)
		if tagLen < 0 {
			return b
		}
		valLen := protowire.ConsumeFieldValue(n, typ, rest[tagLen:])
		if valLen < 0 {
			return b
		}
		if n != num {
			out = append(out, rest[:tagLen+valLen]...)
		}
		rest = rest[tagLen+valLen:]
	}
	return out
}

// takeCaller removes field callerField from msg's unknown fields and
// returns its value (the last one, as protobuf reads a repeated scalar).
func takeCaller(msg proto.Message) string {
	r := msg.ProtoReflect()
	unknown := r.GetUnknown()
	var caller string
	found := false
	for rest := unknown; len(rest) > 0; {
		n, typ, tagLen := protowire.ConsumeTag(rest)
		if tagLen < 0 {
			return ""
		}
		valLen := protowire.ConsumeFieldValue(n, typ, rest[tagLen:])
		if valLen < 0 {
			return ""
		}
		if n == callerField && typ == protowire.BytesType {
			v, _ := protowire.ConsumeString(rest[tagLen:])
			// Events are protobuf strings, which must be UTF-8: a caller
			// that is not (no node writes one) would make every snapshot
			// fail to encode.
			caller, found = strings.ToValidUTF8(v, "\uFFFD"), true
		}
		rest = rest[tagLen+valLen:]
	}
	if found {
		r.SetUnknown(withoutField(unknown, callerField))
	}
	return caller
}

// Decode is the inverse of Encode. The payload is checked to be of the
// type's message; unknown fields are kept, so newer fields pass through.
// A type this version does not know is ErrUndecodable: the node stops
// rather than skip a command its peers apply (cluster/DESIGN.md,
// "Rolling upgrades").
func Decode(b []byte) (Command, error) {
	if len(b) < headerLen {
		return Command{}, fmt.Errorf("%w: %d bytes", ErrUndecodable, len(b))
	}
	e := byTag[CommandType(b[0])]
	if e == nil {
		return Command{}, fmt.Errorf("%w: unknown type %d", ErrUndecodable, b[0])
	}
	msg := e.message.New().Interface()
	if err := proto.Unmarshal(b[headerLen:], msg); err != nil {
		return Command{}, fmt.Errorf("%w: %s: %v", ErrUndecodable, e.name, err)
	}
	if a, ok := msg.(*statev1.ActivateLog); ok && a.GetVersion() > LogVersion {
		// Rules this version lacks: stop, as for an unknown type.
		return Command{}, fmt.Errorf("%w: log version %d is newer than this version's %d", ErrUndecodable, a.GetVersion(), LogVersion)
	}
	stamp := time.Unix(0, int64(binary.BigEndian.Uint64(b[1:headerLen]))).UTC()
	return Command{Stamp: stamp, Payload: msg, Caller: takeCaller(msg)}, nil
}

// The validations of commands whose rules live in their own files or that
// need no more than a bound on their fields.

func validateSubmit(c *statev1.SubmitPlan) error {
	if err := validateSubmitted(c.GetPlan(), c.GetDelta(), c.ExpectedParent != nil); err != nil {
		return err
	}
	if c.GetExpectedDigest() != "" {
		if err := contract.ValidateDigest(c.GetExpectedDigest()); err != nil {
			return err
		}
	}
	if c.GetLeaseName() != "" {
		return contract.ValidateID("lease name", c.GetLeaseName())
	}
	return nil
}

// validateSubmitted checks a submission's plan: a whole plan, or a delta
// (which must name its parent). The gRPC edge checks a SubmitPlanRequest
// with it too.
func validateSubmitted(p *pb.Plan, d *pb.PlanDelta, parent bool) error {
	switch {
	case d != nil && !parent:
		return fmt.Errorf("%w: a delta names its parent (expected_parent)", ErrInvalid)
	case d != nil:
		return contract.ValidateDelta(p, d)
	}
	return contract.ValidatePlan(p)
}

// ValidateSubmitted is validateSubmitted for the gRPC edge.
func ValidateSubmitted(r *pb.SubmitPlanRequest) error {
	return validateSubmitted(r.GetPlan(), r.GetDelta(), r.ExpectedParent != nil)
}

func validateAcquire(r *pb.AcquireLeaseRequest) error {
	return contract.ValidateLeaseRequest(r.GetName(), r.GetHolder(), r.GetTtl().AsDuration())
}

func validateRenew(r *pb.RenewLeaseRequest) error {
	return contract.ValidateLeaseKey(r.GetName(), r.GetHolder())
}

func validateRelease(r *pb.ReleaseLeaseRequest) error {
	return contract.ValidateLeaseKey(r.GetName(), r.GetHolder())
}

func validateCleanup(r *pb.CleanupPlansRequest) error {
	if r.GetKeepLast() < 1 {
		return fmt.Errorf("%w: keep_last must be at least 1", ErrInvalid)
	}
	return nil
}

func validateSetMember(m *statev1.SetMember) error {
	return contract.ValidateMember(m.GetId(), m.GetRaftAddr(), m.GetGrpcAddr())
}

func validateRemoveMember(m *statev1.RemoveMember) error { return contract.ValidateMemberID(m.GetId()) }

func validateLegacyApply(r *pb.LegacyApplyRequest) error {
	if r.GetGeneration() == 0 {
		return fmt.Errorf("%w: generation is required", ErrInvalid)
	}
	if err := contract.ValidateName(r.GetEndpoint()); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return contract.ValidateID("enactor id", r.GetEnactorId())
}

func validateLegacyCleanup(r *pb.LegacyCleanupRequest) error {
	if r.GetKeepGenerations() < 1 {
		return fmt.Errorf("%w: keep_generations must be at least 1", ErrInvalid)
	}
	return nil
}
