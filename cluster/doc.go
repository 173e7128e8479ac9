// Package cluster is a dnsplan node: the Raft-replicated state machine of
// package fsm, its log and snapshot stores, membership, leader forwarding,
// linearizable reads and the gRPC API. It is the only package that imports
// hashicorp/raft. DESIGN.md beside this file gives the reasons behind its
// choices.
package cluster
