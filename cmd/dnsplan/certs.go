package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dnsplan/dnsplan/auth"
)

const certsUsage = `usage:
  dnsplan certs init  --dir DIR [--valid-for DURATION]
  dnsplan certs issue --dir DIR --role ROLE --name NAME [--host HOST]... [--valid-for DURATION] [--replace]
  dnsplan certs show  FILE`

// runCerts makes a cluster's certificates with nothing but this binary:
// a CA, and certificates that bind a role and a name (auth).
func runCerts(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, certsUsage)
		return errors.New("certs: name a step: init, issue or show")
	}
	switch args[0] {
	case "init":
		fs := newFlagSet("certs init", stderr)
		dir := fs.String("dir", "", "the directory for ca.crt and ca.key (created if missing)")
		validFor := fs.Duration("valid-for", auth.DefaultCAValidity, "how long the CA is valid")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		if *dir == "" {
			return errors.New("certs init: --dir is required")
		}
		if err := auth.InitCA(*dir, *validFor, time.Now()); err != nil {
			return fmt.Errorf("certs init: %w", err)
		}
		fmt.Fprintf(stdout, "wrote %s/%s and %s/%s (keep the key secret: it issues every identity)\n", *dir, auth.CACertFile, *dir, auth.CAKeyFile)
		return nil
	case "issue":
		fs := newFlagSet("certs issue", stderr)
		dir := fs.String("dir", "", "the directory of the CA; NAME.crt and NAME.key are written there")
		role := fs.String("role", "", "the holder's role: "+strings.Join(auth.Roles(), ", "))
		name := fs.String("name", "", "the holder's name: the node, planner or enactor id it acts as, or a person's")
		hosts := newListFlag()
		fs.Var(hosts, "host", "a DNS name or IP address the node serves on (repeatable; node certificates only)")
		validFor := fs.Duration("valid-for", auth.DefaultCertValidity, "how long the certificate is valid")
		replace := fs.Bool("replace", false, "overwrite NAME.crt and NAME.key (a rotation)")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		if *dir == "" || *role == "" || *name == "" {
			return errors.New("certs issue: --dir, --role and --name are required")
		}
		r, err := auth.ParseRole(*role)
		if err != nil {
			return fmt.Errorf("certs issue: %w", err)
		}
		req := auth.IssueRequest{Identity: auth.Identity{Role: r, Name: *name}, Hosts: hosts.values, ValidFor: *validFor, Replace: *replace}
		if err := auth.Issue(*dir, req, time.Now()); err != nil {
			return fmt.Errorf("certs issue: %w", err)
		}
		fmt.Fprintf(stdout, "wrote %s and %s (%s %s, valid for %s)\n", auth.CertFile(*dir, *name), auth.KeyFile(*dir, *name), *role, *name, *validFor)
		return nil
	case "show":
		if len(args) != 2 {
			fmt.Fprintln(stderr, certsUsage)
			return errors.New("certs show: name one certificate file")
		}
		c, err := auth.LoadCert(args[1])
		if err != nil {
			return fmt.Errorf("certs show: %w", err)
		}
		fmt.Fprint(stdout, auth.Describe(c, time.Now()))
		return nil
	}
	fmt.Fprintln(stderr, certsUsage)
	return fmt.Errorf("certs: unknown step %q (init, issue or show)", args[0])
}
