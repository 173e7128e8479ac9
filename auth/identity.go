// Package auth is who a caller is: the roles of docs/CONTRACT.md, the
// identity (role and name) a dnsplan certificate carries, and the cluster
// CA that issues those certificates with Go's crypto/x509 alone.
//
// A certificate names its holder once, in a URI subject alternative name
// dnsplan://ROLE/NAME (for example dnsplan://enactor/az-a). The subject's
// common name repeats NAME for people and tools that show it; only the
// URI counts. A certificate with no such URI, two of them, an unknown role
// or a name outside the rules has no identity.
package auth

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Role is what a caller is: a set of bits, so that a method can admit
// several (cluster/methods.go).
type Role uint8

// The roles. Their names are the contract's; the bits are not on the
// wire.
const (
	// RoleReader reads and watches.
	RoleReader Role = 1 << iota
	// RolePlanner submits plans, never forced, under its own id.
	RolePlanner
	// RoleEnactor holds enactor leases as itself, applies and cleans up.
	RoleEnactor
	// RoleOperator may do everything, force, freeze and membership
	// included.
	RoleOperator
	// RoleNode is a cluster member: Raft, forwarding, joining.
	RoleNode
)

// roleNames are the roles as certificates and flags write them.
var roleNames = []struct {
	role Role
	name string
}{
	{RoleReader, "reader"},
	{RolePlanner, "planner"},
	{RoleEnactor, "enactor"},
	{RoleOperator, "operator"},
	{RoleNode, "node"},
}

// Roles lists every role's name, in order.
func Roles() []string {
	out := make([]string, len(roleNames))
	for i, r := range roleNames {
		out[i] = r.name
	}
	return out
}

// ParseRole reads one role's name.
func ParseRole(s string) (Role, error) {
	for _, r := range roleNames {
		if r.name == s {
			return r.role, nil
		}
	}
	return 0, fmt.Errorf("role %q is not one of %s", s, strings.Join(Roles(), ", "))
}

// String names the role, or the roles of a set joined by "|".
func (r Role) String() string {
	var names []string
	for _, n := range roleNames {
		if r&n.role != 0 {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "|")
}

// Identity is who holds a certificate.
type Identity struct {
	Role Role
	// Name is the holder's id: the enactor, planner or node id it acts
	// as, or an operator's or reader's name.
	Name string
}

func (id Identity) String() string { return id.Role.String() + "/" + id.Name }

// uriScheme is the scheme of the identity URI.
const uriScheme = "dnsplan"

// URI is the identity as a certificate carries it.
func (id Identity) URI() *url.URL {
	return &url.URL{Scheme: uriScheme, Host: id.Role.String(), Path: "/" + id.Name}
}

// MaxNameLength bounds a name, as the contract bounds every id.
const MaxNameLength = 128

// ValidateName checks a certificate holder's name: 1..MaxNameLength
// letters, digits, dots, dashes and underscores, not starting with a dot
// or dash. Every id an identity may act as (an enactor, planner or node
// id) fits these rules.
func ValidateName(s string) error {
	if s == "" || len(s) > MaxNameLength {
		return fmt.Errorf("name must be 1..%d bytes", MaxNameLength)
	}
	if s[0] == '.' || s[0] == '-' {
		return errors.New("name must not start with a dot or a dash")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c == '.' || c == '-' || c == '_' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
		if !ok {
			return fmt.Errorf("name has character %q at %d; letters, digits, '.', '-' and '_' only", c, i)
		}
	}
	return nil
}

// ErrNoIdentity: a certificate does not name a dnsplan identity.
var ErrNoIdentity = errors.New("certificate names no dnsplan identity")

// IdentityOf reads the identity a certificate names. It does not verify
// the certificate (the TLS handshake does that against the cluster CA);
// it only reads it.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	var found []*url.URL
	for _, u := range cert.URIs {
		if u.Scheme == uriScheme {
			found = append(found, u)
		}
	}
	switch len(found) {
	case 0:
		return Identity{}, fmt.Errorf("%w: no %s:// URI", ErrNoIdentity, uriScheme)
	case 1:
	default:
		return Identity{}, fmt.Errorf("%w: %d %s:// URIs, want one", ErrNoIdentity, len(found), uriScheme)
	}
	return parseURI(found[0])
}

// IdentityOfURI reads an identity written as its URI (Identity.URI): how
// a node that forwards a call names the original caller.
func IdentityOfURI(u *url.URL) (Identity, error) {
	if u.Scheme != uriScheme {
		return Identity{}, fmt.Errorf("%w: not a %s:// URI", ErrNoIdentity, uriScheme)
	}
	return parseURI(u)
}

// parseURI reads dnsplan://ROLE/NAME, and nothing else: no user, port,
// query, fragment or further path.
func parseURI(u *url.URL) (Identity, error) {
	if u.Opaque != "" || u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || u.RawPath != "" {
		return Identity{}, fmt.Errorf("%w: identity URI has parts other than role and name", ErrNoIdentity)
	}
	role, err := ParseRole(u.Host)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrNoIdentity, err)
	}
	name, ok := strings.CutPrefix(u.Path, "/")
	if !ok {
		return Identity{}, fmt.Errorf("%w: identity URI has no name", ErrNoIdentity)
	}
	if err := ValidateName(name); err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrNoIdentity, err)
	}
	return Identity{Role: role, Name: name}, nil
}
