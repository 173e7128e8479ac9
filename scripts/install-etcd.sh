#!/usr/bin/env bash
# Builds etcd and etcdctl, at the version tools/etcd/go.mod pins, from the Go
# module proxy into .tools/bin: static binaries (CGO_ENABLED=0) for the tests
# of the etcd store (internal/etcdtest) and for an image FROM scratch. Quick
# when they are built already: a stamp beside them holds the hash of the
# go.mod and go.sum they were built from, so a new pin rebuilds them.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/tools/etcd"
out="$root/.tools/bin"
go="${GO:-go}"
want="$(cat "$src/go.mod" "$src/go.sum" | sha256sum | cut -d' ' -f1)"
if [ -x "$out/etcd" ] && [ -x "$out/etcdctl" ] && [ "$(cat "$out/etcd.stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
mkdir -p "$out"
# .tools holds built binaries only; it keeps itself out of git.
[ -f "$root/.tools/.gitignore" ] || echo '*' >"$root/.tools/.gitignore"
version="$(cd "$src" && "$go" list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
echo "building etcd and etcdctl $version into .tools/bin (a few minutes the first time)"
start=$SECONDS
for bin in etcd:go.etcd.io/etcd/server/v3 etcdctl:go.etcd.io/etcd/etcdctl/v3; do
  name="${bin%%:*}" pkg="${bin#*:}"
  (cd "$src" && CGO_ENABLED=0 "$go" build -mod=readonly -trimpath -buildvcs=false -o "$out/$name.tmp" "$pkg")
  mv "$out/$name.tmp" "$out/$name"
done
echo "$want" >"$out/etcd.stamp"
echo "built $("$out/etcd" --version | head -1) in $((SECONDS - start))s"
