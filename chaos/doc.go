// Package chaos runs a real dnsplan system under randomized, seeded
// faults and checks, from what it recorded, that the invariants I1–I5 and
// I7, and the liveness bounds L2 and L3 (no node hangs), of docs/DESIGN.md
// section 3 held. The same harness and checker run the fixed
// design, which must pass, and the legacy design of docs/DESIGN.md section 7,
// which must be caught: a checker that cannot fail proves nothing.
//
// # A run
//
// One run is one design and one seed. It starts, in this process, three
// cluster nodes on loopback TCP (data in a temporary directory, DNS on
// every node, snapshots every few hundred entries so restarts and
// catch-up go through snapshot restore, each node's clock offset from the
// machine's by an amount drawn from the seed: none, or minutes or hours
// ahead or behind, through cluster.Config.Clock), four sample backends
// (package backend), the real planner probing them every 100ms, and three
// enactors (az-a, az-b, az-c) of the design: fixed enactors with a 1s
// lease, or legacy enactors (Config.Legacy, 100ms between endpoint
// writes, an age-based clean-up keeping 10 generations, as the fixed
// clean-up keeps the newest 10) against nodes started with Legacy. A
// goroutine fails and recovers one backend every 150–450ms, never more
// than two at once (so the velocity limit lets each plan through): the
// planner stores about three generations a second.
//
// Every link runs mutual TLS, as a deployed cluster does, with a CA of the
// run's own (cluster/local): Raft, forwarding and joining between nodes,
// and every client. The planner and each enactor dial with a certificate
// naming the id they act as, the observers and the bare watchers with
// readers', and the client that removes added nodes with an operator's,
// so the nodes authorize every call by its role and name as they would
// in production. Config.Insecure runs the whole run in plaintext instead,
// for comparison.
//
// The inventory has four observed endpoints: api (four IPv4 targets),
// api-fips (lb-1, lb-2), api-v6 (lb-3, lb-4 over IPv6) and api-dual (lb-1
// and lb-2 over IPv4, lb-3 and lb-4 over IPv6), and twelve padding
// endpoints of a hundred always-healthy targets each that no check
// observes, so that every plan is tens of KB and a stream that stops being
// read fills within a few plans. About one health change in ten is an
// episode instead: a health-burst (two backends fail at once, the
// velocity limit exactly, then a third: each step is within the limit
// against the plan before it, the sum is not), or a family-outage (lb-1
// and lb-2 fail, every IPv4 target of api-dual, which empties its A
// family unless the planner fails open per family); each lasts about a
// second.
//
// # Faults
//
// The schedule (faults.go) is drawn from the seed before the run: one
// fault at a time, the first after 1.5s of warm-up, each healed before the
// next starts (0.3–1.2s later), none still under way in the last 3.5s
// (room for the L2 bound after the last heal). With the default mix that
// is a new fault every two to four seconds:
//
//   - kill-leader, kill-follower: Node.Close, then cluster.Start on the
//     same ports and data directory 0.5–2s later. Close is a clean stop,
//     but every acknowledged write was fsync'd, so a killed process would
//     lose no more.
//   - partition: a node (the leader or a follower) loses its Raft links to
//     both others for 1–2.5s. Network is the tool: every node opens its
//     Raft connections through Network.Dialer (cluster.Config.RaftDial),
//     which refuses dials across a cut link and closes the connections
//     already open across it, tracked by (from, to). Only Raft is cut:
//     clients still reach the cut-off node over gRPC, and it still
//     forwards what they send to the leader it knows; a deposed leader
//     answering clients is the harder case for safety.
//   - freeze-enactor: the enactor's PauseGate holds every step and every
//     RPC of its client (lease renewals too) for 2–4.5 lease TTLs, then
//     lets it send what it was about to send. It freezes at its next
//     write if it makes one within a second (its decision, and in the
//     fixed design its token, already taken: the delayed enactor of the
//     AWS event), else where it is.
//   - slow-enactor: for 2–4s, the enactor pauses 0.3–1.2s before each
//     write (enactor.Config's BeforeApply hook).
//   - restart-cluster: every node closed, and started again 0.2–1s later.
//   - stall-watcher: a bare client of the API (a reader) opens
//     WatchPlans (from the first plan) and WatchApplied on a node (the
//     leader or a follower) with gRPC's smallest receive window, 64 KB,
//     and does not read them for 3–5 lease TTLs while plans keep coming;
//     then it reads again, or dies (its connection closed).
//   - stall-enactor: an enactor (half the time the lease holder) stops
//     reading its plan watch for 3–5 lease TTLs: a stream interceptor on
//     its client holds RecvMsg, so nothing drains the stream, while its
//     lease renewals and applies go on, as when the goroutine that reads
//     the stream is stuck. Then it reads again, or the stream is dropped
//     (as a dying process's connection) and its watch reconnects.
//   - replace-node: a node is closed, its data directory deleted, and
//     0.5–2s later it starts again, empty, on the same addresses, joining
//     through a member (cluster.Config.Join) or from the founding list (as
//     compose does), by the seed. The probe asks its DNS throughout.
//   - add-node: a new, empty node joins through a member as a voter
//     (four voters), with its own probe from its first second, and is
//     removed (RemoveServer) and stopped 2–4s later.
//   - clock-jump: a node's clock (the leader's, half the time) jumps by
//     minutes or hours, ahead or behind, and stays there.
//   - partition-watch: the node serving the lease holder's plan watch
//     (the interceptor above knows it: each enactor's client starts at a
//     different node and stays on it until the stream breaks) loses its
//     Raft links for 3–4.5 lease TTLs, while its clients stay connected.
//   - doubtful-plan: an operator submits, unforced, the newest plan with
//     every padding endpoint moved to new addresses, as a planner reading
//     a broken source would; the cluster stores it held and freezes
//     itself (freeze on doubt), and the operator unfreezes 0.5–2s later.
//     D1, judged on the audit history: the held plan is never applied.
//     While frozen, every other invariant is judged as always.
//
// Half the time (by the seed) the enactor frozen or slowed is the active
// one, the last to set out to write: in the fixed design the lease holder,
// in the legacy design the one winning the race to each new plan (the
// others mostly find it already written). Otherwise any.
//
// Everything random (the schedule, which node or enactor within a role,
// every health change) comes from math/rand/v2 seeded with the seed, so a
// seed always injects the same faults at the same times. Which node leads
// when a fault starts, and the exact interleaving of the actors, depend on
// timing; a seed reproduces the fault run, not every message.
//
// # What is recorded
//
//   - Operations for the linearizability check (history.go): each
//     endpoint's applied generation is a register that only grows. One
//     reader per endpoint makes linearizable GetApplied reads back to back
//     (a failed read returned nothing and is left out; NOT_FOUND reads 0).
//     Every attempt of every apply the enactors send is seen by a gRPC
//     interceptor on their clients: an acknowledged ApplyPlan reports, per
//     endpoint, the generation the endpoint is at (APPLIED: this one;
//     STALE: the newer one already there); an acknowledged LegacyApply
//     says the endpoint is now at the generation written. A rejection
//     (the cluster's typed reasons: fenced, not found, …) changed nothing
//     and is left out; any other failure has an unknown outcome and is
//     recorded with a return time of infinity, porcupine's convention.
//   - The timeline: faults and their healing, plans stored (the planner's
//     acknowledged SubmitPlan), clean-ups, lease grants.
//   - The cluster's audit history, fetched every 500ms (it keeps only the
//     newest 1,000 events) and merged by index; a fetch that cannot join
//     the previous one is marked as a gap.
//
// # The checks
//
//   - I1: porcupine.CheckOperationsVerbose over all operations, one
//     partition per endpoint, with a model whose apply of g leaves
//     max(state, g) and must report it. The legacy design fails it with an
//     acknowledged write of an older generation, or a read that sees one.
//     Before that, cheaply and as operations return, an operation must not
//     report a generation older than one reported before it was called (a
//     necessary condition, which lets a run stop at its first violation).
//     An endpoint the cluster refused (OUTCOME_REFUSED) changed nothing
//     and is left out. And the probe (package probe) asks every node's
//     DNS every 100ms: a node's served generation must never go back.
//   - I2: the probe again (an empty answer after answering with
//     addresses), every linearizable read (an applied record with no
//     address), and every 50ms every running node's replica, read under
//     its lock so that what is seen is one state: every applied endpoint
//     resolves to an address.
//   - I3: in the same replica reads, every applied generation's plan is
//     stored; and at the end.
//   - I4: on the merged audit history, every apply the cluster accepted
//     (applied or stale) carried the current token of its lease, held by
//     its sender, rebuilt from the acquire and release events (not judged
//     across a gap; expiry is not judged, renewals are not recorded); and,
//     as the enactors' clients saw it, no apply was accepted with a token
//     older than a grant acknowledged before it was sent.
//   - I5: the final reads, made after every fault is healed and every
//     node restarted, are part of the linearizability check, so every
//     acknowledged apply must still be visible; every plan whose
//     SubmitPlan was acknowledged is stored at the end unless a recorded
//     clean-up deleted plans after it was stored; and the cluster must
//     recover (a leader, every member) once every fault is healed.
//   - I2 per family and I7 velocity, on each endpoint's applied
//     sequence: the audit history's applies (outcome applied), oldest
//     first, each tied to its plan's record as every replica stores it.
//     A replica that was behind, paused or newly joined passes several
//     steps at once, so the rules are judged on the sequence the state
//     machine applied, not on what one replica was seen holding: once a
//     record serves an IPv4 (IPv6) address, the next one does unless its
//     plan was forced; and a record not forced keeps at least half the
//     capacity of every highest-capacity record served within the last
//     60s before it (the cluster's defaults; a record is served until the
//     next is applied), counted per address (the smaller of the two
//     weights), so a replaced address counts as removed. The window is
//     measured in state-machine time, as the state machine measures it;
//     a breach is reported at the run time the audit fetch first saw it.
//     A forced apply, or one whose record was never learned or that
//     follows an audit gap, starts the judgement afresh.
//   - I2 for a node that starts with no data (replace-node, add-node):
//     NXDOMAIN or no address at all for an endpoint applied before it
//     started is a violation from its first second (it must say SERVFAIL
//     until it can serve); any other node gets a second after an
//     endpoint is first applied to show it.
//   - DNS answers held to their generation: an answer the probe could
//     tie to one generation (the TXT query before and after A and AAAA
//     named the same one) holds exactly as many IPv4 and IPv6 addresses
//     as that generation's record serves, so a node cannot serve a
//     record the state machine did not apply (reported as I7).
//   - L2 during a fault: while an enactor is frozen, stalled or watching
//     through a cut-off node, or a watcher stalls a node, the cluster has
//     a quorum, so the newest plan stored one TTL and one renewal
//     interval after the fault began must be applied to every endpoint
//     (a read or an acknowledged apply shows it, or the cluster refused
//     it for that endpoint: OUTCOME_REFUSED is its rule, not a stall)
//     within TTL + renewal + 2s of the start, if the fault lasts that
//     long.
//   - L2 at the end: after the last fault heals, the newest plan stored
//     within a TTL and a renewal interval must be applied, and served by
//     every running member's DNS, within TTL + renewal + 2s.
//   - L3, no node hangs: every running node is asked for its Status,
//     each on its own, every 250ms; no answer within 2s from a node that
//     ran throughout the call is a hang.
//
// Operations of unknown outcome make porcupine's search exponential, so
// before the check the retries of one request are reduced to the first,
// and dropped when the audit history shows the request never applied
// (reduceUnknown); both can only make a history harder to linearize, never
// hide a violation. Porcupine gets 60s; beyond it the verdict is Unknown,
// reported as inconclusive, not as a violation.
//
// # Output
//
// A run stops a second after its first violation (Config.KeepGoing runs
// the whole duration) and reports: the seed, the first violation of each
// invariant, the history around the first one (the faults, the writes,
// the reads at which the generation changed, the audit events), and two
// files in Config.Out: the whole history as JSON, and porcupine's HTML
// visualization with the faults as annotations. Tally adds runs up into
// the table `make chaos` prints.
package chaos
