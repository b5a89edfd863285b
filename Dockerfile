# syncd: `syncd run` as a non-root user, state in a volume, health asked of the daemon itself.
#   docker build -t syncd .
#   docker run --stop-timeout 45 -v syncd-state:/var/lib/syncd -v ./syncd.toml:/etc/syncd/syncd.toml:ro syncd
# or deploy/compose.yaml. The build stage runs the same two commands as deploy/README.md's install.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY syncd ./syncd
RUN python3 -m venv /opt/syncd && /opt/syncd/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 syncd \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/syncd --create-home \
       --shell /usr/sbin/nologin syncd
COPY --from=build /opt/syncd /opt/syncd
# The health listener stays on 127.0.0.1 inside the container: HEALTHCHECK runs in the container.
# To scrape /metrics from outside, also set SYNCD_HEALTH__HOST=0.0.0.0 and
# SYNCD_HEALTH__ALLOW_REMOTE=true and publish the port.
# Secrets are files /run/secrets/<source>.<field> (compose or swarm secrets); SYNCD_SECRETS_DIR
# is where to look for them, not a secret.
# hadolint ignore=DL3064
ENV PATH="/opt/syncd/bin:${PATH}" \
    SYNCD_CONFIG=/etc/syncd/syncd.toml \
    SYNCD_STORE__PATH=/var/lib/syncd/syncd.db \
    SYNCD_SECRETS_DIR=/run/secrets \
    SYNCD_LOG_FORMAT=json \
    SYNCD_HEALTH__ENABLED=true \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/syncd"]
USER 10001:10001
WORKDIR /var/lib/syncd
# Asks the daemon's own /healthz: the event loop answers and the scheduler runs.
HEALTHCHECK --interval=30s --timeout=10s --start-period=5m --retries=3 \
    CMD ["syncd", "healthcheck", "--timeout", "5"]
# SIGTERM drains running syncs for shutdown_grace (30 s by default), then cancels them and exits 0.
# Docker's default stop timeout is 10 s: run with --stop-timeout 45 (compose: stop_grace_period),
# or lower shutdown_grace below the timeout you use.
STOPSIGNAL SIGTERM
ENTRYPOINT ["syncd"]
CMD ["run"]
