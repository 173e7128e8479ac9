// Package e2e holds the end-to-end test of the docker compose cluster:
// built with the e2e tag and run by `make e2e`, it drives real containers
// (kill, pause, network disconnect, recreation on an empty volume,
// restart) and checks what clients see.
package e2e
