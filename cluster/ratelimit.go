package cluster

import (
	"errors"
)

// ErrRateLimited: a client is over its write rate on this node. It
// becomes RESOURCE_EXHAUSTED with reason RATE_LIMIT; the write never
// reaches the log, and the client may retry after a pause.
var ErrRateLimited = errors.New("write rate limit")

// Write rate defaults (Config.WriteRate, WriteBurst): far above what a
// planner, an enactor or an operator needs, and far below what would let
// one client fill the log.
const (
	DefaultWriteRate  = 200
	DefaultWriteBurst = 400
)
