# syncd: `syncd run` as a non-root user, state in a volume, health asked of the daemon itself.
#   docker build -t syncd .
#   docker run -v syncd-state:/var/lib/syncd -v ./syncd.toml:/etc/syncd/syncd.toml:ro syncd
# or deploy/compose.yaml. The build stage runs the same commands as deploy/README.md's install:
# the hash-pinned lock (deploy/lock.sh regenerates it), then syncd itself with no dependency
# resolution, so two builds of one commit install the same files.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/runtime.lock ./requirements/
COPY syncd ./syncd
RUN python3 -m venv /opt/syncd && /opt/syncd/bin/pip install --no-cache-dir --require-hashes -r requirements/runtime.lock && /opt/syncd/bin/pip install --no-cache-dir --no-deps .

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
# Settings the image needs (state path, secrets directory, JSON logs, the health listener for
# HEALTHCHECK, a grace that fits a plain `docker stop`) are defaults in a file, not environment
# variables: a setting in the operator's syncd.toml wins over them (deploy/image-defaults.toml).
COPY deploy/image-defaults.toml /usr/share/syncd/image-defaults.toml
ENV PATH="/opt/syncd/bin:${PATH}" \
    SYNCD_CONFIG=/etc/syncd/syncd.toml \
    SYNCD_CONFIG_DEFAULTS=/usr/share/syncd/image-defaults.toml \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/syncd"]
USER 10001:10001
WORKDIR /var/lib/syncd
# Asks the daemon's own /healthz: the event loop answers and the scheduler runs.
HEALTHCHECK --interval=30s --timeout=10s --start-period=5m --retries=3 \
    CMD ["syncd", "healthcheck", "--timeout", "5"]
# SIGTERM (forwarded by tini) drains running syncs for shutdown_grace (5 s unless the config
# says otherwise), then cancels them and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "syncd"]
CMD ["run"]
