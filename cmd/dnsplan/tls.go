package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/client"
)

// tlsFlags are the TLS flags of every subcommand that talks to a cluster
// (and of the node itself): the cluster CA bundle, the process's
// certificate and key, or --insecure for plaintext.
type tlsFlags struct {
	m        auth.Material
	insecure bool
}

func addTLSFlags(fs *flag.FlagSet) *tlsFlags {
	t := &tlsFlags{}
	fs.StringVar(&t.m.CA, "tls-ca", "", "the cluster CA bundle (PEM); with --tls-cert and --tls-key, every connection is mutual TLS")
	fs.StringVar(&t.m.Cert, "tls-cert", "", "this process's certificate (dnsplan certs issue)")
	fs.StringVar(&t.m.Key, "tls-key", "", "this process's private key")
	fs.BoolVar(&t.insecure, "insecure", false, "plaintext, unauthenticated: anyone who reaches the ports can do anything")
	return t
}

// errNoTLS: a node was given neither TLS material nor --insecure.
var errNoTLS = errors.New(`node: no TLS material: make a CA and this node's certificate with
  dnsplan certs init --dir DIR
  dnsplan certs issue --dir DIR --role node --name ID --host HOST
and start it with --tls-ca DIR/ca.crt --tls-cert DIR/ID.crt --tls-key DIR/ID.key,
or with --insecure to run it in plaintext, unauthenticated`)

// nodeLoader is the node's TLS material: required, unless --insecure.
func (t *tlsFlags) nodeLoader() (*auth.Loader, error) {
	given := t.m.CA != "" || t.m.Cert != "" || t.m.Key != ""
	switch {
	case t.insecure && given:
		return nil, errors.New("node: --insecure and --tls-* exclude each other")
	case t.insecure:
		return nil, nil
	case !t.m.Complete():
		if given {
			return nil, errors.New("node: --tls-ca, --tls-cert and --tls-key go together")
		}
		return nil, errNoTLS
	}
	l, err := auth.NewLoader(t.m)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if id := l.Identity(); id.Role != auth.RoleNode {
		return nil, fmt.Errorf("node: --tls-cert is a %s certificate; a node needs a node's", id)
	}
	return l, nil
}

// clientOptions are a client's TLS options: mutual TLS with the material
// given, plaintext without (which only an --insecure node accepts).
func (t *tlsFlags) clientOptions() ([]client.Option, *auth.Loader, error) {
	given := t.m.CA != "" || t.m.Cert != "" || t.m.Key != ""
	switch {
	case t.insecure && given:
		return nil, nil, errors.New("--insecure and --tls-* exclude each other")
	case !given:
		return nil, nil, nil
	case !t.m.Complete():
		return nil, nil, errors.New("--tls-ca, --tls-cert and --tls-key go together")
	}
	l, err := auth.NewLoader(t.m)
	if err != nil {
		return nil, nil, err
	}
	return []client.Option{client.WithTLS(l.ClientConfig(""))}, l, nil
}

// defaultCertDir is where ctl looks for the cluster CA and an operator's
// certificate (operator.crt, operator.key) when given no TLS flags and not
// --insecure: the directory `make up` writes them to.
const defaultCertDir = ".dnsplan/certs"

// discover fills in the default material from dir if no TLS flag was
// given, --insecure was not, and the three files are there.
func (t *tlsFlags) discover(dir string) {
	if t.insecure || t.m.CA != "" || t.m.Cert != "" || t.m.Key != "" {
		return
	}
	m := auth.FilesIn(dir, "operator")
	for _, f := range []string{m.CA, m.Cert, m.Key} {
		if _, err := os.Stat(f); err != nil {
			return
		}
	}
	t.m = m
}

// reloadInterval is how often TLS files are checked for a change.
const reloadInterval = 10 * time.Second

// reloadTLS reloads l on SIGHUP and when its files change, until ctx
// ends: a rotation takes effect for new connections without a restart.
func reloadTLS(ctx context.Context, l *auth.Loader, log *slog.Logger) {
	if l == nil {
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		tick := time.NewTicker(reloadInterval)
		defer tick.Stop()
		for {
			why := ""
			select {
			case <-ctx.Done():
				return
			case <-hup:
				why = "SIGHUP"
			case <-tick.C:
				if !l.Changed() {
					continue
				}
				why = "files changed"
			}
			if err := l.Reload(); err != nil {
				log.Error("TLS reload failed; keeping the material in use", "trigger", why, "err", err)
				continue
			}
			log.Info("TLS material reloaded", "trigger", why, "identity", l.Identity())
		}
	}()
}
