package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Material names the TLS files of one process: the cluster CA bundle it
// trusts, and its own certificate and key.
type Material struct {
	CA, Cert, Key string
}

// Complete reports whether every file is named.
func (m Material) Complete() bool { return m.CA != "" && m.Cert != "" && m.Key != "" }

// Loader holds a process's current TLS material and hands it to every new
// handshake, so that certificates and the CA bundle can be replaced while
// the process runs (Reload; a rotation): connections made before keep
// what they were made with, new ones use what was loaded last. The CA
// file may hold several certificates: during a CA rotation it holds the
// old and the new, and both are trusted.
type Loader struct {
	m Material

	// mu guards cert, pool and loaded, replaced together by Reload.
	mu     sync.RWMutex
	cert   *tls.Certificate
	pool   *x509.CertPool
	loaded map[string]time.Time // file modification times at the last load
}

// NewLoader loads m; every file must be readable and the certificate must
// match its key and carry an identity.
func NewLoader(m Material) (*Loader, error) {
	if !m.Complete() {
		return nil, errors.New("auth: a CA bundle, a certificate and a key are required")
	}
	l := &Loader{m: m}
	if err := l.Reload(); err != nil {
		return nil, err
	}
	return l, nil
}

// Reload reads the files again. On any error the material in use stays
// as it was: a half-written rotation never takes a process off the air.
func (l *Loader) Reload() error {
	mtimes := map[string]time.Time{}
	for _, f := range []string{l.m.CA, l.m.Cert, l.m.Key} {
		fi, err := os.Stat(f)
		if err != nil {
			return fmt.Errorf("auth: %w", err)
		}
		mtimes[f] = fi.ModTime()
	}
	caPEM, err := os.ReadFile(l.m.CA)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("auth: %s holds no PEM certificate", l.m.CA)
	}
	cert, err := tls.LoadX509KeyPair(l.m.Cert, l.m.Key)
	if err != nil {
		return fmt.Errorf("auth: %s, %s: %w", l.m.Cert, l.m.Key, err)
	}
	if _, err := IdentityOf(cert.Leaf); err != nil {
		return fmt.Errorf("auth: %s: %w", l.m.Cert, err)
	}
	l.mu.Lock()
	l.cert, l.pool, l.loaded = &cert, pool, mtimes
	l.mu.Unlock()
	return nil
}

// Changed reports whether a file changed since the last load: the poll
// behind reloading on file change.
func (l *Loader) Changed() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	for f, t := range l.loaded {
		if fi, err := os.Stat(f); err == nil && !fi.ModTime().Equal(t) {
			return true
		}
	}
	return false
}

// Identity is who this process is, by its current certificate.
func (l *Loader) Identity() Identity {
	l.mu.RLock()
	defer l.mu.RUnlock()
	id, _ := IdentityOf(l.cert.Leaf) // checked at load
	return id
}

func (l *Loader) current() (*tls.Certificate, *x509.CertPool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.cert, l.pool
}

// ServerConfig is the TLS configuration of a server that admits only
// clients with a certificate of the cluster CA (TLS 1.3, mutual).
func (l *Loader) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := l.current()
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{*cert},
				ClientCAs:    pool,
				ClientAuth:   tls.RequireAndVerifyClientCert,
			}, nil
		},
	}
}

// ClientConfig is the TLS configuration of a client: it presents its own
// certificate and verifies the server's against the cluster CA, and
// serverName if set (otherwise any certificate of the CA's nodes: nodes
// are reached by addresses their certificates may not list, and the CA
// issues node certificates only to nodes).
func (l *Loader) ClientConfig(serverName string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := l.current()
			return cert, nil
		},
		// Verification is done below, against the pool loaded last;
		// RootCAs would fix the pool for the config's lifetime.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, pool := l.current()
			return verifyServer(cs, pool, serverName)
		},
	}
}

// verifyServer checks a server's chain against pool, and that it is a
// node: a certificate of another role must not serve.
func verifyServer(cs tls.ConnectionState, pool *x509.CertPool, serverName string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("auth: the server presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, DNSName: serverName}
	if _, err := leaf.Verify(opts); err != nil {
		return fmt.Errorf("auth: server certificate: %w", err)
	}
	id, err := IdentityOf(leaf)
	if err != nil {
		return fmt.Errorf("auth: server certificate: %w", err)
	}
	if id.Role != RoleNode {
		return fmt.Errorf("auth: server certificate is a %s's, not a node's", id.Role)
	}
	return nil
}

// PeerIdentity is the identity of the verified client of a server-side
// connection.
func PeerIdentity(cs tls.ConnectionState) (Identity, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Identity{}, fmt.Errorf("%w: no verified client certificate", ErrNoIdentity)
	}
	return IdentityOf(cs.VerifiedChains[0][0])
}
