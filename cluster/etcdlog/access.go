package etcdlog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultRole is the etcd role Authorize grants the log's prefix to.
const DefaultRole = "dnsplan"

// rootName is etcd's superuser and its role, which etcd requires before
// it enables authentication.
const rootName = "root"

// Authorize sets etcd's authentication up so that only users, the dnsplan
// nodes' etcd users, and root may read and write the log under prefix:
// whoever else could write there would bypass every node's authorization
// and could stop every node with an entry that does not decode
// (cluster/DESIGN.md, "Who may write the log"). It makes sure of, in
// order: the root user and role; role, with read and write on the prefix
// and nothing else; each of users, granted role (a user it adds has no
// password: it authenticates by a client certificate whose common name is
// the user's name, etcd's --client-cert-auth); and authentication enabled.
// Users and roles that exist are kept. Before enabling, it refuses if
// another role may write under the prefix or another user (root aside)
// holds role: that writer would stay unseen.
//
// Every step is safe to repeat: run again, Authorize changes nothing and
// checks everything again. Once authentication is on, cli must act as
// root. It returns what it changed, in order.
func Authorize(ctx context.Context, cli *clientv3.Client, prefix, role string, users []string) ([]string, error) {
	if !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("etcdlog: prefix %q must start and end with /", prefix)
	}
	if role == "" || role == rootName {
		return nil, fmt.Errorf("etcdlog: role %q: name a role of its own for the log", role)
	}
	if len(users) == 0 || slices.Contains(users, rootName) || slices.Contains(users, "") {
		return nil, errors.New("etcdlog: name the nodes' etcd users (not root)")
	}
	var done []string
	step := func(what string, err error, exists error) error {
		switch {
		case err == nil:
			done = append(done, what)
			return nil
		case exists != nil && errors.Is(err, exists):
			return nil
		}
		return fmt.Errorf("etcdlog: %s: %w", what, err)
	}
	noPassword := &clientv3.UserAddOptions{NoPassword: true}
	_, err := cli.UserAddWithOptions(ctx, rootName, "", noPassword)
	if err := step("added user root", err, rpctypes.ErrUserAlreadyExist); err != nil {
		return done, err
	}
	_, err = cli.RoleAdd(ctx, rootName)
	if err := step("added role root", err, rpctypes.ErrRoleAlreadyExist); err != nil {
		return done, err
	}
	if err := grantRole(ctx, cli, rootName, rootName, &done); err != nil {
		return done, err
	}
	_, err = cli.RoleAdd(ctx, role)
	if err := step("added role "+role, err, rpctypes.ErrRoleAlreadyExist); err != nil {
		return done, err
	}
	end := clientv3.GetPrefixRangeEnd(prefix)
	r, err := cli.RoleGet(ctx, role)
	if err != nil {
		return done, fmt.Errorf("etcdlog: reading role %s: %w", role, err)
	}
	has := false
	for _, p := range r.Perm {
		if string(p.Key) == prefix && string(p.RangeEnd) == end && p.PermType == authpb.READWRITE {
			has = true
			continue
		}
		return done, fmt.Errorf("etcdlog: role %s also has %s on [%q, %q): a role of its own for the log, please", role, p.PermType, p.Key, p.RangeEnd)
	}
	if !has {
		_, err := cli.RoleGrantPermission(ctx, role, prefix, end, clientv3.PermissionType(clientv3.PermReadWrite))
		if err := step(fmt.Sprintf("granted role %s read and write on %s", role, prefix), err, nil); err != nil {
			return done, err
		}
	}
	for _, u := range users {
		_, err := cli.UserAddWithOptions(ctx, u, "", noPassword)
		if err := step("added user "+u+" (no password: its certificate's common name)", err, rpctypes.ErrUserAlreadyExist); err != nil {
			return done, err
		}
		if err := grantRole(ctx, cli, u, role, &done); err != nil {
			return done, err
		}
	}
	if err := otherWriters(ctx, cli, prefix, end, role, users); err != nil {
		return done, err
	}
	st, err := cli.AuthStatus(ctx)
	if err != nil {
		return done, fmt.Errorf("etcdlog: authentication status: %w", err)
	}
	if !st.Enabled {
		_, err := cli.AuthEnable(ctx)
		if err := step("enabled authentication", err, nil); err != nil {
			return done, err
		}
	}
	return done, nil
}

// grantRole grants role to user unless the user has it.
func grantRole(ctx context.Context, cli *clientv3.Client, user, role string, done *[]string) error {
	u, err := cli.UserGet(ctx, user)
	if err != nil {
		return fmt.Errorf("etcdlog: reading user %s: %w", user, err)
	}
	if slices.Contains(u.Roles, role) {
		return nil
	}
	if _, err := cli.UserGrantRole(ctx, user, role); err != nil {
		return fmt.Errorf("etcdlog: granting role %s to user %s: %w", role, user, err)
	}
	*done = append(*done, "granted role "+role+" to user "+user)
	return nil
}

// otherWriters refuses a role other than root and the log's own that may
// write a key in [prefix, end), and a user other than root and users that
// holds the log's role.
func otherWriters(ctx context.Context, cli *clientv3.Client, prefix, end, role string, users []string) error {
	roles, err := cli.RoleList(ctx)
	if err != nil {
		return fmt.Errorf("etcdlog: listing roles: %w", err)
	}
	for _, name := range roles.Roles {
		if name == rootName || name == role {
			continue
		}
		r, err := cli.RoleGet(ctx, name)
		if err != nil {
			return fmt.Errorf("etcdlog: reading role %s: %w", name, err)
		}
		for _, p := range r.Perm {
			if p.PermType != authpb.READ && overlaps(string(p.Key), string(p.RangeEnd), prefix, end) {
				return fmt.Errorf("etcdlog: role %s may write [%q, %q), inside the log's prefix %s: revoke it (etcdctl role revoke-permission)", name, p.Key, p.RangeEnd, prefix)
			}
		}
	}
	all, err := cli.UserList(ctx)
	if err != nil {
		return fmt.Errorf("etcdlog: listing users: %w", err)
	}
	for _, name := range all.Users {
		if name == rootName || slices.Contains(users, name) {
			continue
		}
		u, err := cli.UserGet(ctx, name)
		if err != nil {
			return fmt.Errorf("etcdlog: reading user %s: %w", name, err)
		}
		if slices.Contains(u.Roles, role) {
			return fmt.Errorf("etcdlog: user %s holds role %s but is not one of the nodes named: revoke it (etcdctl user revoke-role)", name, role)
		}
	}
	return nil
}

// overlaps reports whether etcd's range [key, rangeEnd) (rangeEnd empty:
// key alone; "\x00": every key from key on) meets [prefix, end).
func overlaps(key, rangeEnd, prefix, end string) bool {
	switch rangeEnd {
	case "":
		return key >= prefix && key < end
	case "\x00":
		return key < end
	}
	return key < end && prefix < rangeEnd
}
