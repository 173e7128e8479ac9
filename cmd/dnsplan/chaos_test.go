package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Flag errors come before anything starts; the runs themselves are tested
// in package chaos.
func TestChaosFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"chaos", "--design", "sturdy"}, `design "sturdy"`},
		{[]string{"chaos", "--faults", "kill-leader,meteor"}, `unknown fault "meteor"`},
		{[]string{"chaos", "--runs", "0"}, "at least 1"},
		{[]string{"chaos", "--duration", "1s"}, "under 5s"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), tt.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error()+out.String(), tt.want) {
			t.Errorf("%v: err %v, output %q; want %q", tt.args, err, out.String(), tt.want)
		}
	}
}
