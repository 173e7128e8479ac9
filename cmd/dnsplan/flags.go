package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// newFlagSet returns a flag set for one subcommand that reports errors
// instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("dnsplan "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// commandLineOnly are the flags that override a safety rule: they are
// never read from the environment, where a variable left set by an
// earlier session would apply them to every later command unseen.
var commandLineOnly = map[string]bool{"force": true}

// parseFlags parses args, then fills every flag not given on the command
// line from DNSPLAN_<FLAG> (upper case, dashes as underscores), so a flag
// always overrides its environment variable. The commandLineOnly flags
// are the exception.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || commandLineOnly[f.Name] || err != nil {
			return
		}
		key := envName(f.Name)
		v, ok := os.LookupEnv(key)
		if !ok {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("%s=%q: %v", key, v, e)
		}
	})
	return err
}

func envName(flagName string) string {
	return "DNSPLAN_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// listFlag is a repeatable string flag; values may also be comma-separated
// (the form an environment variable takes).
type listFlag struct {
	values []string
	set    bool // false while values still hold the default
}

func newListFlag(defaults ...string) *listFlag { return &listFlag{values: defaults} }

func (l *listFlag) String() string { return strings.Join(l.values, ",") }

func (l *listFlag) Set(s string) error {
	if !l.set {
		l.values, l.set = nil, true
	}
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			l.values = append(l.values, v)
		}
	}
	return nil
}
