package cluster

import (
	"slices"
	"testing"

	"google.golang.org/grpc"
)

// TestMethodTable: every method the server registers is in the method
// table with an access and roles, and the table lists nothing else, so
// no handler can be reached without the table's rules.
func TestMethodTable(t *testing.T) {
	s := grpc.NewServer()
	registerServices(s, nil, nil, true)
	var registered []string
	for svc, info := range s.GetServiceInfo() {
		for _, m := range info.Methods {
			name := "/" + svc + "/" + m.Name
			registered = append(registered, name)
			e, ok := methods[name]
			switch {
			case !ok:
				t.Errorf("%s is registered but not in the method table", name)
			case e.roles == 0:
				t.Errorf("%s admits no role", name)
			case (e.access == accessStream) != (m.IsClientStream || m.IsServerStream):
				t.Errorf("%s: access %d, streaming %v", name, e.access, m.IsServerStream)
			case e.access == accessWrite && e.validate == nil:
				t.Errorf("%s is a write with no validation", name)
			}
		}
	}
	for name := range methods {
		if !slices.Contains(registered, name) {
			t.Errorf("the method table lists %s, which no service registers", name)
		}
	}
}
