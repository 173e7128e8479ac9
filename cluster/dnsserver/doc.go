// Package dnsserver is a node's authoritative DNS server: it owns the
// in-memory view of the applied records that DNS answers come from, and the
// rules by which a query is answered from that view (A/AAAA in weighted
// order, SOA and NS at each zone apex, NXDOMAIN and NODATA as RFC 1034, 2308
// and 8020 say, REFUSED outside its zones, EDNS0 and truncation, RFC 8482
// for ANY), over UDP and TCP.
//
// It behaves like an edge server: the view is replaced only by Update, so
// whatever happens to the cluster (no leader, a partition, a slow state
// machine) the server keeps answering the last state it was given. It never
// reads the cluster itself; the node calls Update after every change.
//
// Reads are lock-free: Update builds an immutable view, every record
// pre-built, and swaps it in with one atomic store; a query loads the view
// once and works only on that snapshot, so no answer mixes two states and a
// slow Update never delays a query. Per query only the reply message and,
// for two or more addresses, the ordered answer slice are allocated.
//
// Choices, and why:
//
//   - Weighted order: each address draws the key -ln(U)/weight and the
//     answer is sorted by key (Efraimidis–Spirakis sampling without
//     replacement). The first address, the one most clients use, is target
//     i with probability weight_i/Σweight, and every address is still in the
//     answer for clients that fail over.
//   - SOA serial: the newest revision (Raft log index) among the zone's
//     applied endpoints, as 32 bits, at least 1. Any change to any record of
//     the zone is a newer apply, so the serial rises with every change, is
//     the same on every node that applied the same log, and needs no state
//     of its own. It is never lowered, even if Update is handed an older
//     state.
//   - ANY: one synthesized HINFO "RFC8482" "" at names that hold records
//     (RFC 8482 §4.2), never the full record set, so ANY cannot amplify.
//   - _dnsplan.<endpoint> TXT "generation=N enactor=ID revision=R", TTL 0:
//     which apply this node serves, for an operator with only dig.
//   - Responses arriving as queries (QR set) are dropped by the network
//     server, as miekg/dns does by default, so two servers cannot bounce
//     errors at each other; ServeDNS called directly answers them FORMERR.
//     Every other decision (FORMERR, NOTIMP, BADVERS) is made in ServeDNS,
//     so the metrics count it.
//   - No zone transfers (REFUSED): every node has the data from Raft.
package dnsserver
