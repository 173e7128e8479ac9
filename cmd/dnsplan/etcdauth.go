package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/dnsplan/dnsplan/cluster/etcdlog"
)

// runEtcdAuth sets etcd's users and roles up so that only the named nodes
// (and root) may read and write the log under --etcd-prefix, and turns
// etcd's authentication on (etcdlog.Authorize). It is safe to run again:
// what exists is kept and checked. Once authentication is on, it must act
// as root: by a client certificate whose common name is root (an
// etcd-user certificate from `dnsplan certs`), or as user root.
func runEtcdAuth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("etcd-auth", stderr)
	etcdf := addEtcdConnFlags(fs, "")
	nodes := newListFlag()
	fs.Var(nodes, "node", "etcd user of a dnsplan node, granted read and write on the prefix: the node's certificate's common name, its --id (repeatable, or comma-separated; required)")
	role := fs.String("role", etcdlog.DefaultRole, "etcd role that holds read and write on the prefix")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait for etcd to answer, in all")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("etcd-auth: unexpected arguments %q", fs.Args())
	}
	if len(nodes.values) == 0 {
		return errors.New("etcd-auth: name the nodes' etcd users with --node")
	}
	cfg, err := etcdf.connection()
	if err != nil {
		return fmt.Errorf("etcd-auth: %w", err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: 5 * time.Second,
		TLS:         cfg.TLS,
		Username:    cfg.Username,
		Password:    cfg.Password,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return fmt.Errorf("etcd-auth: etcd client: %w", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	done, err := etcdlog.Authorize(ctx, cli, cfg.Prefix, *role, nodes.values)
	for _, d := range done {
		fmt.Fprintln(stdout, d)
	}
	if err != nil {
		return fmt.Errorf("etcd-auth: %w", err)
	}
	if len(done) == 0 {
		fmt.Fprintln(stdout, "nothing to change")
	}
	fmt.Fprintf(stdout, "etcd authentication on; %s read and write only by root and role %s (users %v)\n", cfg.Prefix, *role, nodes.values)
	return nil
}
