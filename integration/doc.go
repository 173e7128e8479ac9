// Package integration holds the whole-system tests: a real cluster with DNS
// on every node, real sample backends, planners and enactors, all in one
// test process over loopback, with the probe checking the invariants a
// client can see throughout. It has no code of its own.
package integration
