# syntax=docker/dockerfile:1
# portcullis container image (BuildKit, the default builder of current Docker).
#
#   docker build -t portcullis .
#   docker run --rm -p 8080:8080 -p 9901:9901 \
#     -v "$PWD/my-gateway.yaml:/etc/portcullis/gateway.yaml:ro" portcullis
#
# The image ships the demo gateway.yaml (see README.md); mount your own over it.

# --- build --------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
# The whole project (see .dockerignore): the manifest names the bench and
# example targets, so cargo wants their files even to build the binary.
COPY . .
# Cache mounts keep the crate downloads and the dependency builds between
# builds; the binary is copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -m 0755 target/release/portcullis /usr/local/bin/portcullis

# --- run ----------------------------------------------------------------------
FROM debian:bookworm-slim

# CA roots for https:// JWKS, discovery and upstream URLs (rustls-native-certs
# reads the system store). Unpinned on purpose: the newest roots are wanted.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric id, so that Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 portcullis \
    && useradd --system --uid 10001 --gid portcullis --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin portcullis

COPY --from=build /usr/local/bin/portcullis /usr/local/bin/portcullis
COPY gateway.yaml /etc/portcullis/gateway.yaml

# The shipped gateway.yaml reads its listen addresses from these; inside a
# container they must be 0.0.0.0 for the published ports to answer.
ENV PORTCULLIS_LISTEN=0.0.0.0:8080 \
    PORTCULLIS_ADMIN_LISTEN=0.0.0.0:9901
# glibc would keep each argon2 verification's 7 MiB (client secrets, logins)
# in the arena of the thread that ran it; with a fixed mmap threshold such
# blocks go back to the system when freed (measured: issuer peak 35 -> 22 MiB,
# same throughput; see benches/RESULTS.md). The binary sets this for itself
# when it is unset (by re-executing once); set here, it starts directly.
ENV MALLOC_MMAP_THRESHOLD_=1048576

USER 10001:10001
EXPOSE 8080 9901
# SIGTERM drains in-flight requests for server.shutdown_grace (default 30s),
# so give `docker stop` more than that: docker stop -t 35.
STOPSIGNAL SIGTERM

ENTRYPOINT ["portcullis"]
CMD ["run", "-c", "/etc/portcullis/gateway.yaml"]
