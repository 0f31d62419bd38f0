# Hearth: build the release binary, then run it on Debian with PostgreSQL's server binaries,
# which the embedded default (a private cluster under /data) needs.
#
#   docker build -t hearth .
#   docker run -d --name hearth -p 8008:8008 -v hearth-data:/data hearth
#   docker exec hearth hearth user create alice --admin
#
# Configure with HEARTH_* environment variables (see config.example.toml), or mount a file and
# run `serve --config /path/to/config.toml`.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
 && cp target/release/hearth /usr/local/bin/hearth

FROM debian:bookworm-slim
ARG PG_MAJOR=15
# The package must not create a cluster of its own (`create_main_cluster = false`): Hearth makes
# one under /data. Hearth finds initdb and postgres in PATH (set below), or else in
# /usr/lib/postgresql/<newest>/bin.
RUN export DEBIAN_FRONTEND=noninteractive \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-common \
 && sed -ri 's/^#?\s*create_main_cluster\b.*$/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf \
 && grep -qx 'create_main_cluster = false' /etc/postgresql-common/createcluster.conf \
 && apt-get install -y --no-install-recommends postgresql ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && test -x /usr/lib/postgresql/${PG_MAJOR}/bin/initdb \
 && test -x /usr/lib/postgresql/${PG_MAJOR}/bin/postgres
ENV PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:$PATH

COPY --from=builder /usr/local/bin/hearth /usr/local/bin/hearth

# Hearth runs unprivileged, so the embedded PostgreSQL runs as this same user.
RUN useradd --system --user-group --home-dir /data --shell /usr/sbin/nologin hearth \
 && mkdir -p /data \
 && chown hearth:hearth /data \
 && chmod 0700 /data
WORKDIR /data

ENV HEARTH_DATA_DIR=/data \
    HEARTH_LISTEN=0.0.0.0:8008
EXPOSE 8008
VOLUME /data
USER hearth

# tini reaps children and forwards SIGTERM; Hearth then stops its PostgreSQL cleanly.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/hearth"]
CMD ["serve"]
