# The dnsplan image: the static binary that `make build` writes to
# bin/dnsplan (CGO_ENABLED=0), on an empty base, so it builds with no
# registry. `make image` (and `make up`) build the binary first.
# Dockerfile.golang builds inside the golang image instead, for machines
# that can pull it.
FROM scratch
COPY bin/dnsplan /dnsplan
# /data belongs to the unprivileged user, so named volumes mounted there
# start writable.
COPY --chown=65532:65532 deploy/image/data /data
# /certs likewise: the compose cluster's one-shot certs service writes the
# CA and every certificate into a named volume mounted there.
COPY --chown=65532:65532 deploy/image/data /certs
USER 65532:65532
WORKDIR /data
ENTRYPOINT ["/dnsplan"]
