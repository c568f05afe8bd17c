# pgwarden in a container: a static binary on a distroless base, run as a
# non-root user, with the configuration, users file and certificates
# mounted at /etc/pgwarden:
#
#   docker build -t pgwarden .
#   docker run -v "$PWD/deploy:/etc/pgwarden" -p 6432:6432 -p 8432:8432 pgwarden
#
# The listeners in the mounted config.toml must bind 0.0.0.0 (pg_listen,
# http_listen) to be reachable through -p; unix_socket_dir = "" (or a
# mounted folder). The users file must be writable by uid 65532 when the
# consoles, ALTER USER or POST /_token are to change it.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
    -o /out/pgwarden ./cmd/pgwarden

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pgwarden /usr/local/bin/pgwarden
USER 65532:65532
VOLUME ["/etc/pgwarden"]
EXPOSE 6432 8432
ENV PGWARDEN_CONFIG=/etc/pgwarden/config.toml
# /readyz answers 200 when pgwarden is not draining and the backend answers;
# the binary itself is the probe (distroless has no curl).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/pgwarden", "probe", "http://127.0.0.1:8432/readyz"]
ENTRYPOINT ["/usr/local/bin/pgwarden"]
CMD ["serve"]
