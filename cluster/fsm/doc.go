// Package fsm holds the rules of dnsplan's replicated state machine: plans,
// applied endpoints, fenced leases, clean-up, freeze, the cluster's policy
// (design and velocity limit) and the audit history.
//
// It is a pure package: no Raft, gRPC, clock, randomness, goroutines or I/O.
// State.Apply is a deterministic function of (state, log index, command
// with its leader-stamped time), so every replica that applies the same log
// reaches the same state, and tests can drive it directly for millions of
// steps. Every safety decision (generation order, lease fencing, freeze,
// what clean-up may delete, velocity, per-family I2, the design) is taken
// inside Apply, in the same step as the write it guards; callers are never
// trusted to have checked first.
//
// Values handed out by State (plans, applied endpoints, leases, events) are
// immutable once stored: Apply replaces them instead of changing them, which
// lets readers and snapshots share them without copying.
package fsm
