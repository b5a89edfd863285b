# syncd: `syncd run` as a non-root user, state in a volume, health asked of the daemon itself.
#   docker build -t syncd .
#   docker run -v syncd-state:/var/lib/syncd -v ./syncd.toml:/etc/syncd/syncd.toml:ro syncd
# or deploy/compose.yaml. The build stage runs the same two commands as deploy/README.md's install.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY syncd ./syncd
RUN python3 -m venv /opt/syncd && /opt/syncd/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
# tini as PID 1: the kernel ignores a signal PID 1 has no handler for, so until syncd has
# installed its own (after opening, maybe migrating, the database) SIGTERM would do nothing and
# every stop would end in SIGKILL. tini forwards signals and reaps orphans; baked into the image
# it works under plain docker, compose and Kubernetes alike, where `--init` is only docker's.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 syncd \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/syncd --create-home \
       --shell /usr/sbin/nologin syncd
COPY --from=build /opt/syncd /opt/syncd
# The health listener stays on 127.0.0.1 inside the container: HEALTHCHECK runs in the container.
# To scrape /metrics from outside, also set SYNCD_HEALTH__HOST=0.0.0.0 and
# SYNCD_HEALTH__ALLOW_REMOTE=true and publish the port.
# Secrets are files /run/secrets/<source>.<field> (compose or swarm secrets); SYNCD_SECRETS_DIR
# is where to look for them, not a secret.
# SYNCD_SHUTDOWN_GRACE=5: a plain `docker stop` waits 10 s before SIGKILL; after the drain the
# cancelled runs' last rows and the token cache's last save may each wait on the database. It overrides shutdown_grace in the file: to give runs longer, set the variable
# and a stop timeout above it together (deploy/compose.yaml: 30 s and 45 s).
# hadolint ignore=DL3064
ENV PATH="/opt/syncd/bin:${PATH}" \
    SYNCD_CONFIG=/etc/syncd/syncd.toml \
    SYNCD_STORE__PATH=/var/lib/syncd/syncd.db \
    SYNCD_SECRETS_DIR=/run/secrets \
    SYNCD_LOG_FORMAT=json \
    SYNCD_HEALTH__ENABLED=true \
    SYNCD_SHUTDOWN_GRACE=5 \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/syncd"]
USER 10001:10001
WORKDIR /var/lib/syncd
# Asks the daemon's own /healthz: the event loop answers and the scheduler runs.
HEALTHCHECK --interval=30s --timeout=10s --start-period=5m --retries=3 \
    CMD ["syncd", "healthcheck", "--timeout", "5"]
# SIGTERM (forwarded by tini) drains running syncs for SYNCD_SHUTDOWN_GRACE, then cancels them
# and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "syncd"]
CMD ["run"]
