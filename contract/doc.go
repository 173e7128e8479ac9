// Package contract holds the names every dnsplan program shares on the
// wire: the reasons a refusal carries, the keys of error details and
// trailers, and the message limit. The cluster writes them, the client,
// planner, enactor and harnesses read them; none of them compares a
// string of its own. The public interface as a whole is described in
// docs/CONTRACT.md.
//
// It imports nothing of dnsplan, so every package may import it.
package contract
