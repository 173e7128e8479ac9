// Package contract holds what every dnsplan program shares about the
// wire: the rules a plan and a request must follow and their limits
// (validate.go), the canonical form of names, the reasons a refusal
// carries, the keys of error details and trailers, and the message limit.
// The cluster enforces the rules (at its gRPC edge and again inside the
// state machine, with these same functions) and writes the reasons; the
// client, planner, enactor and harnesses check plans before they send them
// and read the reasons, and none of them keeps a rule or compares a string
// of its own. The public interface as a whole is described in
// docs/CONTRACT.md.
//
// It imports nothing of dnsplan, so every package may import it.
package contract
