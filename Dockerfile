# syntax=docker/dockerfile:1
# fhirgate: a static binary on a distroless base, running as a non-root user.
#   docker build --build-arg VERSION=1.0.0 --build-arg COMMIT=$(git rev-parse HEAD) -t fhirgate .
# The root file system can be read-only: the process writes only to /data
# (the embedded SQLite store, when used) and to nothing at all on PostgreSQL.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
# the same flags as cmd/fhirgate's TestReleaseBuild: no cgo (modernc SQLite
# is pure Go), reproducible paths, stamped version
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/fhirgate ./cmd/fhirgate \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="fhirgate" \
      org.opencontainers.image.description="FHIR R4 records gateway" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/fhirgate/fhirgate"
COPY --from=build /out/fhirgate /usr/local/bin/fhirgate
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
ENV FHIRGATE_ADDR=0.0.0.0:8080 \
    FHIRGATE_DB=sqlite:/data/fhirgate.db
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=4s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/fhirgate", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/fhirgate"]
CMD ["serve"]
