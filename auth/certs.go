package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Lifetimes. A cluster CA lives long enough to outlast its deployments'
// routine; the certificates it issues live for a quarter, so a lost key is
// useful for months, not years, and rotation (issue again, then reload)
// is a routine step rather than an emergency.
const (
	DefaultCAValidity   = 5 * 365 * 24 * time.Hour
	DefaultCertValidity = 90 * 24 * time.Hour
	// backdate covers clocks a little behind the issuer's.
	backdate = 5 * time.Minute
)

// File names in a certificate directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// CertFile and KeyFile are the files of the certificate issued to name.
func CertFile(dir, name string) string { return filepath.Join(dir, name+".crt") }
func KeyFile(dir, name string) string  { return filepath.Join(dir, name+".key") }

// FilesIn is the material of the certificate issued to name in dir: the
// directory's CA bundle, NAME.crt and NAME.key.
func FilesIn(dir, name string) Material {
	return Material{CA: filepath.Join(dir, CACertFile), Cert: CertFile(dir, name), Key: KeyFile(dir, name)}
}

// ErrExists: a file would be overwritten.
var ErrExists = errors.New("already exists")

// InitCA writes a new cluster CA into dir (created if missing): ca.crt and
// ca.key. It never replaces an existing CA: every certificate it issued
// would stop working.
func InitCA(dir string, validFor time.Duration, now time.Time) error {
	if validFor <= 0 {
		validFor = DefaultCAValidity
	}
	for _, f := range []string{CACertFile, CAKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("%s: %w; a cluster has one CA (remove it only to start over, with every certificate)", filepath.Join(dir, f), ErrExists)
		}
	}
	key, serial, err := newKey()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "dnsplan cluster CA", Organization: []string{"dnsplan"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return writePair(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile), der, key, false)
}

// EtcdUse marks a certificate made for etcd rather than for dnsplan. Such
// a certificate names no dnsplan identity (no dnsplan:// URI), so a node's
// API refuses it (UNAUTHENTICATED) and no dnsplan client takes its holder
// for a node; etcd reads only its common name, the NAME it was issued to.
// A dnsplan node reaches etcd with its own node certificate, whose common
// name, the node's name, is its etcd user (cluster/DESIGN.md, "Who may
// write the log"): the CA issues one certificate per name, so no other
// role's certificate carries that user's name.
type EtcdUse uint8

const (
	// NotEtcd is a dnsplan certificate, naming its holder's identity.
	NotEtcd EtcdUse = iota
	// EtcdMember is an etcd member's: it serves etcd's client and peer
	// ports at its Hosts and dials the other members (server and client
	// use).
	EtcdMember
	// EtcdUser authenticates to etcd as the user its common name names
	// (etcd's --client-cert-auth): root, to set up etcd's users and roles.
	EtcdUser
)

var etcdUseNames = []struct {
	use  EtcdUse
	name string
}{
	{EtcdMember, "etcd-member"},
	{EtcdUser, "etcd-user"},
}

// EtcdUses lists the names of the etcd certificates' uses, in order.
func EtcdUses() []string {
	out := make([]string, len(etcdUseNames))
	for i, u := range etcdUseNames {
		out[i] = u.name
	}
	return out
}

// ParseEtcdUse reads an etcd certificate's use by its name.
func ParseEtcdUse(s string) (EtcdUse, error) {
	for _, u := range etcdUseNames {
		if u.name == s {
			return u.use, nil
		}
	}
	return NotEtcd, fmt.Errorf("%q is not one of %s", s, strings.Join(EtcdUses(), ", "))
}

func (u EtcdUse) String() string {
	for _, n := range etcdUseNames {
		if n.use == u {
			return n.name
		}
	}
	return "none"
}

// EtcdUseOf is the etcd use a certificate was issued for (its
// organizational unit), or NotEtcd; a certificate naming a dnsplan
// identity is a dnsplan certificate whatever else it says.
func EtcdUseOf(c *x509.Certificate) EtcdUse {
	if _, err := IdentityOf(c); err == nil {
		return NotEtcd
	}
	for _, ou := range c.Subject.OrganizationalUnit {
		if u, err := ParseEtcdUse(ou); err == nil {
			return u
		}
	}
	return NotEtcd
}

// IssueRequest is one certificate to issue.
type IssueRequest struct {
	// Identity is the holder's role and name; for an etcd certificate
	// (Etcd) only the name, with no role.
	Identity Identity
	// Etcd, if set, makes a certificate for etcd instead of a dnsplan
	// identity.
	Etcd EtcdUse
	// Hosts are the DNS names and IP addresses a node's or an etcd
	// member's certificate is valid for as a server (others only
	// connect).
	Hosts    []string
	ValidFor time.Duration // default DefaultCertValidity
	// Replace allows overwriting NAME.crt and NAME.key (a rotation).
	Replace bool
}

// Issue signs a certificate for r with the CA in dir and writes NAME.crt
// and NAME.key there. Nodes and etcd members get server and client use
// (they serve, and dial each other); every other holder client use only.
func Issue(dir string, r IssueRequest, now time.Time) error {
	if err := ValidateName(r.Identity.Name); err != nil {
		return err
	}
	kind := r.Identity.Role.String()
	switch r.Etcd {
	case NotEtcd:
		if _, err := ParseRole(kind); err != nil {
			return errors.New("exactly one role is required")
		}
	case EtcdMember, EtcdUser:
		if r.Identity.Role != 0 {
			return fmt.Errorf("an %s certificate names no dnsplan role (it has %s)", r.Etcd, r.Identity.Role)
		}
		kind = r.Etcd.String()
	default:
		return fmt.Errorf("unknown etcd use %d", r.Etcd)
	}
	serves := r.Identity.Role == RoleNode || r.Etcd == EtcdMember
	if r.ValidFor <= 0 {
		r.ValidFor = DefaultCertValidity
	}
	if !serves && len(r.Hosts) > 0 {
		return fmt.Errorf("--host is for node and etcd-member certificates; a %s only connects", kind)
	}
	caCert, caKey, err := LoadCA(dir)
	if err != nil {
		return err
	}
	notAfter := now.Add(r.ValidFor)
	if notAfter.After(caCert.NotAfter) {
		return fmt.Errorf("a certificate valid for %s would outlive the CA, which expires %s", r.ValidFor, caCert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, serial, err := newKey()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: r.Identity.Name, Organization: []string{"dnsplan"}, OrganizationalUnit: []string{kind}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if r.Etcd == NotEtcd {
		tmpl.URIs = []*url.URL{r.Identity.URI()}
	}
	if serves {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		for _, h := range r.Hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if h != "" {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return err
	}
	return writePair(CertFile(dir, r.Identity.Name), KeyFile(dir, r.Identity.Name), der, key, r.Replace)
}

// LoadCA reads the CA certificate and key in dir.
func LoadCA(dir string) (*x509.Certificate, crypto.Signer, error) {
	cert, err := LoadCert(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, nil, fmt.Errorf("%w (make one with: dnsplan certs init --dir %s)", err, dir)
	}
	b, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, nil, fmt.Errorf("%s: no PEM private key", filepath.Join(dir, CAKeyFile))
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", filepath.Join(dir, CAKeyFile), err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%s: not a signing key", filepath.Join(dir, CAKeyFile))
	}
	return cert, signer, nil
}

// LoadCert reads the first certificate of a PEM file.
func LoadCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM certificate", path)
		}
		if blk.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			return c, nil
		}
	}
}

// Describe is what `dnsplan certs show` prints about a certificate.
func Describe(c *x509.Certificate, now time.Time) string {
	var b strings.Builder
	if id, err := IdentityOf(c); err == nil {
		fmt.Fprintf(&b, "role:        %s\nname:        %s\n", id.Role, id.Name)
	} else if u := EtcdUseOf(c); u != NotEtcd {
		fmt.Fprintf(&b, "etcd:        %s (no dnsplan identity)\nname:        %s\n", u, c.Subject.CommonName)
	} else if c.IsCA {
		fmt.Fprintf(&b, "role:        CA\nname:        %s\n", c.Subject.CommonName)
	} else {
		fmt.Fprintf(&b, "identity:    none (%v)\n", err)
	}
	var hosts []string
	hosts = append(hosts, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	if len(hosts) > 0 {
		fmt.Fprintf(&b, "hosts:       %s\n", strings.Join(hosts, ", "))
	}
	fmt.Fprintf(&b, "issuer:      %s\n", c.Issuer.CommonName)
	fmt.Fprintf(&b, "valid from:  %s\n", c.NotBefore.UTC().Format(time.RFC3339))
	left := c.NotAfter.Sub(now)
	state := fmt.Sprintf("in %s", left.Round(time.Minute))
	switch {
	case left <= 0:
		state = "EXPIRED"
	case left > 48*time.Hour:
		state = fmt.Sprintf("in %d days", int(left.Hours()/24))
	}
	fmt.Fprintf(&b, "expires:     %s (%s)\n", c.NotAfter.UTC().Format(time.RFC3339), state)
	sum := sha256.Sum256(c.Raw)
	fmt.Fprintf(&b, "serial:      %s\nsha256:      %s\n", c.SerialNumber.Text(16), hex.EncodeToString(sum[:]))
	return b.String()
}

// writePair writes a certificate (0644) and its key (0600), both at once
// or neither: the key first to a temporary name, each file synced and
// renamed into place.
func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey, replace bool) error {
	if !replace {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("%s: %w (issue again with --replace to rotate it)", p, ErrExists)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// newKey is a fresh P-256 key and a random 127-bit serial number for its
// certificate.
func newKey() (*ecdsa.PrivateKey, *big.Int, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return key, serial, err
}
