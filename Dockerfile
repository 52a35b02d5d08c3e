# syntax=docker/dockerfile:1
# ticketbridge production image.
#
#   docker build -t ticketbridge .
#   docker run -p 8080:8080 -v ticketbridge-data:/data ticketbridge
#
# BASE_IMAGE must provide python3 (>= 3.11) with the venv module. The default is the official
# slim image; scripts/container-check passes a local Debian bookworm base instead. Both
# stages use the same base, so the interpreter the venv points at exists in the runtime stage.
ARG BASE_IMAGE=python:3.12-slim

# --- build: a self-contained virtual environment with the project and its dependencies -------
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# Non-editable install: the runtime stage needs only /opt/venv, not this source tree.
RUN /opt/venv/bin/pip install --no-cache-dir . \
 && /opt/venv/bin/ticketbridge --help >/dev/null

# --- runtime ------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="ticketbridge" \
      org.opencontainers.image.description="Helpdesk ticket webhooks to VictorOps incidents, durably and exactly once." \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    TICKETBRIDGE_DATABASE_URL=sqlite:////data/ticketbridge.db

# Unprivileged user with fixed ids (so volume ownership and runAsNonRoot are predictable);
# /data holds the SQLite database and must be writable by it.
RUN groupadd --gid 10001 ticketbridge \
 && useradd --uid 10001 --gid ticketbridge --home-dir /data --no-create-home --no-log-init \
      --shell /usr/sbin/nologin ticketbridge \
 && mkdir -p /data \
 && chown ticketbridge:ticketbridge /data \
 && chmod 0750 /data

# Owned by root: the application cannot modify its own code.
COPY --from=build /opt/venv /opt/venv

WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM

# Liveness only (GET /healthz); /readyz also checks the store. No curl in slim images: use python.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["ticketbridge"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
