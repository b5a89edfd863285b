# syncd: a container that runs `syncd run` as a non-root user with its state in a volume.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY syncd ./syncd
RUN python -m venv /opt/syncd && /opt/syncd/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/syncd --create-home syncd
COPY --from=build /opt/syncd /opt/syncd
ENV PATH="/opt/syncd/bin:${PATH}" \
    SYNCD_CONFIG=/etc/syncd/syncd.toml \
    SYNCD_STORE__PATH=/var/lib/syncd/syncd.db \
    SYNCD_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/syncd"]
USER syncd
WORKDIR /var/lib/syncd
# SIGTERM drains running syncs for shutdown_grace (30 s by default): give the runtime longer than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["syncd"]
CMD ["run"]
