# Sluice container images, built from this repository alone.
#
#   docker build -t sluice:dev .                                  # the gateway (default target)
#   docker build --target otel-collector -t sluice-otel-collector:dev .
#
# Nothing is fetched beyond the pinned base images and the Go modules go.sum names (through
# the Go module proxy, Go's own package manager): no curl | sh, no downloaded binaries.
# docker-compose.yaml builds both targets; test/compose checks this file's FROM lines.

# ---- build: the two static binaries ---------------------------------------------------------
FROM golang:1.26.8 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/sluice ./cmd/sluice && \
    go build -trimpath -ldflags="-s -w" -o /out/sluice-fakeprovider ./test/fakeprovider

# ---- otel-collector: the upstream collector plus a probe tool ------------------------------
# The collector image is FROM scratch: no shell, no wget, so a compose health check has
# nothing to run. BusyBox from the official image is statically linked; its wget probes the
# collector's health_check extension.
FROM busybox:1.37.0-musl AS busybox
FROM otel/opentelemetry-collector-contrib:0.159.0 AS otel-collector
COPY --from=busybox /bin/busybox /usr/local/bin/busybox

# ---- runtime: the gateway image (default target) ------------------------------------------
# Alpine rather than distroless: BusyBox's sh and wget serve the compose health checks and
# the one-shot init script. The binaries are static; the image runs as uid 65532.
FROM alpine:3.22.2 AS runtime
RUN addgroup -S -g 65532 sluice && adduser -S -D -H -u 65532 -G sluice -h /var/lib/sluice sluice && \
    mkdir -p /var/lib/sluice /run/sluice && chown 65532:65532 /var/lib/sluice /run/sluice
COPY --from=build /out/sluice /out/sluice-fakeprovider /usr/local/bin/
USER 65532:65532
WORKDIR /var/lib/sluice
# 8080 is Envoy's listener, not this image's; these are the split processes' defaults in
# docker-compose.yaml: admin API, fleet push, ADS, extproc probes, ext_proc, dispatcher.
EXPOSE 9000 9001 9002 9003 9004 9100
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["help"]
