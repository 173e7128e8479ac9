package cluster

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/contract"
)

func TestRateLimitStatus(t *testing.T) {
	err := toStatus(fmt.Errorf("%w: client x", ErrRateLimited))
	if status.Code(err) != codes.ResourceExhausted || client.Reason(err) != contract.ReasonRateLimit {
		t.Fatalf("%v (reason %q), want RESOURCE_EXHAUSTED / RATE_LIMIT", err, client.Reason(err))
	}
}
