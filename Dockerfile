# Prep ES image: `prep-es serve` by default; `prep-es project` for the projector worker
# (see docker-compose.yml). Configured only by PREP_ES_* variables (README, Configuration).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install the package and its dependencies (all wheels: psycopg binary, argon2, orjson),
# then drop the sources: nothing runs from a checkout.
COPY pyproject.toml README.md /src/
COPY prep_es /src/prep_es
COPY aggregates /src/aggregates
COPY commands /src/commands
COPY projections /src/projections
COPY queries /src/queries
COPY api /src/api
RUN pip install /src && rm -rf /src

# An unprivileged user, owning only its data directory (the embedded database of a
# plain `docker run`) and the directory where worker processes sum their metrics.
RUN groupadd --system --gid 10001 prep \
    && useradd --system --uid 10001 --gid prep --home-dir /var/lib/prep-es \
        --shell /usr/sbin/nologin prep \
    && mkdir -p /var/lib/prep-es /var/run/prep-es/metrics \
    && chown prep:prep /var/lib/prep-es /var/run/prep-es/metrics
USER 10001:10001
WORKDIR /var/lib/prep-es

# prometheus-client's multiprocess mode: each worker writes its counters here and the
# one that answers /metrics sums them (prep-es serve empties it at start).
ENV PROMETHEUS_MULTIPROC_DIR=/var/run/prep-es/metrics

EXPOSE 8000
STOPSIGNAL SIGTERM
CMD ["prep-es", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
