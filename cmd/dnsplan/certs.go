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
  dnsplan certs init  --dir DIR [--valid-for DURATION] [--if-missing] [--issue ROLE/NAME[@HOST,...]]...
  (ROLE is a dnsplan role, or etcd-member or etcd-user for etcd's own certificates)
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
		ifMissing := fs.Bool("if-missing", false, "keep a CA and certificates that already exist; make only what is missing")
		var issues issueFlag
		fs.Var(&issues, "issue", "also issue ROLE/NAME, with @HOST,... for a node's or an etcd member's hosts (repeatable; ROLE may also be "+strings.Join(auth.EtcdUses(), " or ")+"); what a one-shot container makes for a whole cluster")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		if *dir == "" {
			return errors.New("certs init: --dir is required")
		}
		now := time.Now()
		switch err := auth.InitCA(*dir, *validFor, now); {
		case err == nil:
			fmt.Fprintf(stdout, "wrote %s/%s and %s/%s (keep the key secret: it issues every identity)\n", *dir, auth.CACertFile, *dir, auth.CAKeyFile)
		case *ifMissing && errors.Is(err, auth.ErrExists):
			fmt.Fprintf(stdout, "kept the CA in %s\n", *dir)
		default:
			return fmt.Errorf("certs init: %w", err)
		}
		for _, r := range issues {
			err := auth.Issue(*dir, r, now)
			switch {
			case err == nil:
				fmt.Fprintf(stdout, "wrote %s (%s)\n", auth.CertFile(*dir, r.Identity.Name), issued(r))
			case *ifMissing && errors.Is(err, auth.ErrExists):
				fmt.Fprintf(stdout, "kept %s\n", auth.CertFile(*dir, r.Identity.Name))
			default:
				return fmt.Errorf("certs init: %s: %w", issued(r), err)
			}
		}
		return nil
	case "issue":
		fs := newFlagSet("certs issue", stderr)
		dir := fs.String("dir", "", "the directory of the CA; NAME.crt and NAME.key are written there")
		role := fs.String("role", "", "the holder's role: "+strings.Join(auth.Roles(), ", ")+"; or, for etcd's own certificates (no dnsplan identity), "+strings.Join(auth.EtcdUses(), " or "))
		name := fs.String("name", "", "the holder's name: the node, planner or enactor id it acts as, a person's, or an etcd member's or user's")
		hosts := newListFlag()
		fs.Var(hosts, "host", "a DNS name or IP address the node or etcd member serves on (repeatable; node and etcd-member certificates only)")
		validFor := fs.Duration("valid-for", auth.DefaultCertValidity, "how long the certificate is valid")
		replace := fs.Bool("replace", false, "overwrite NAME.crt and NAME.key (a rotation)")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		if *dir == "" || *role == "" || *name == "" {
			return errors.New("certs issue: --dir, --role and --name are required")
		}
		req, err := issueRequest(*role, *name)
		if err != nil {
			return fmt.Errorf("certs issue: %w", err)
		}
		req.Hosts, req.ValidFor, req.Replace = hosts.values, *validFor, *replace
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

// issueFlag is the repeatable --issue ROLE/NAME[@HOST,...] of certs init.
type issueFlag []auth.IssueRequest

func (f *issueFlag) String() string { return fmt.Sprint(len(*f)) }

func (f *issueFlag) Set(v string) error {
	who, hosts, _ := strings.Cut(v, "@")
	role, name, ok := strings.Cut(who, "/")
	if !ok {
		return fmt.Errorf("%q is not ROLE/NAME[@HOST,...]", v)
	}
	req, err := issueRequest(role, name)
	if err != nil {
		return err
	}
	if hosts != "" {
		req.Hosts = strings.Split(hosts, ",")
	}
	*f = append(*f, req)
	return nil
}

// issueRequest is the certificate of a role (or an etcd use) and a name.
func issueRequest(role, name string) (auth.IssueRequest, error) {
	if u, err := auth.ParseEtcdUse(role); err == nil {
		return auth.IssueRequest{Identity: auth.Identity{Name: name}, Etcd: u}, nil
	}
	r, err := auth.ParseRole(role)
	if err != nil {
		return auth.IssueRequest{}, fmt.Errorf("%w (or, for etcd, %s)", err, strings.Join(auth.EtcdUses(), ", "))
	}
	return auth.IssueRequest{Identity: auth.Identity{Role: r, Name: name}}, nil
}

// issued names what a request issues: the identity, or the etcd use and
// name.
func issued(r auth.IssueRequest) string {
	if r.Etcd != auth.NotEtcd {
		return r.Etcd.String() + "/" + r.Identity.Name
	}
	return r.Identity.String()
}
