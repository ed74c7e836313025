# The production image: gunicorn serving app.wsgi:app as an unprivileged user, with tini
# as PID 1. compose.yaml runs it with PostgreSQL, the migration step and nginx; alone:
#
#   docker build -t flask-kit .
#   docker run --rm --stop-timeout 45 -p 127.0.0.1:8000:8000 \
#     -e SECRET_KEY=... -e DATABASE_URL=postgresql://... flask-kit
#   docker run --rm -e SECRET_KEY=... -e DATABASE_URL=... \
#     flask-kit alembic upgrade heads          # the migration step, before new code serves
#
# Environment set here (override at run time):
#   PATH                        /app/.venv/bin first: `gunicorn`, `alembic`, `python` are the venv's
#   PYTHONDONTWRITEBYTECODE=1   the code is read-only to the app user; nothing tries to write .pyc
#   PYTHONUNBUFFERED=1          log lines reach `docker logs` as they are written
#   GUNICORN_BIND=0.0.0.0:8000  reachable from other containers (gunicorn.conf.py binds loopback)
#   APP_ENV=production          the image is for production: no SECRET_KEY means no start
# Build stage only: UV_COMPILE_BYTECODE, UV_LINK_MODE, UV_PYTHON_DOWNLOADS, UV_PYTHON.
# Read at run time: every variable in .env.example (chassis/settings/declarations.py, gunicorn.conf.py); in
# production at least SECRET_KEY and DATABASE_URL. The health check
# reads PORT (default 8000): set it as well if you move GUNICORN_BIND off port 8000.
#
# Partner numbers: port 8000 is gunicorn.conf.py's default and compose.yaml's APP_UPSTREAM
# (app:8000). On stop, gunicorn gets SIGTERM and gives requests graceful_timeout 30 s
# (gunicorn.conf.py); the runner's stop timeout must be longer, 45 s: compose.yaml's
# stop_grace_period, `docker run --stop-timeout 45`, Kubernetes' terminationGracePeriodSeconds.
# A Dockerfile cannot set it, and Docker's default of 10 s cuts graceful shutdown short.
#
# Base images are pinned by exact tag. For builds that cannot change under you, also pin
# the digest: `docker buildx imagetools inspect python:3.11.14-slim-bookworm` prints it;
# write FROM python:3.11.14-slim-bookworm@sha256:<digest> in both stages (likewise for uv).
# Needs BuildKit (Docker 23+ builds with it by default) for the cache and bind mounts.

# --- Build stage: the locked dependencies installed into /app/.venv ---------------------
FROM python:3.11.14-slim-bookworm AS builder

# uv from its official image, the same version the Makefile bootstraps (UV_VERSION).
COPY --from=ghcr.io/astral-sh/uv:0.13.8 /uv /uvx /bin/

# Byte-compile at install (the app user cannot write .pyc files later); copy files out of
# the cache mount rather than hard-linking across filesystems; use this image's Python and
# never download one, so the venv runs on the identical interpreter in the final stage.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3

# The venv is built where it will run: its scripts' shebangs name /app/.venv/bin/python.
WORKDIR /app

# Dependencies only, before any code, so this layer is rebuilt only when uv.lock or
# pyproject.toml change. --locked fails the build if the lock is stale; --no-dev leaves out
# pytest, mypy, ruff and the linters. The project itself is never installed (package =
# false in pyproject.toml): its code is copied below and runs from /app. No extras: for
# tracing (TRACING_ENABLED) add `--extra tracing` to the command (docs/tracing.md).
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --locked --no-dev --no-install-project

# --- Runtime stage: interpreter, venv and code; no uv, no compilers, no build cache -----
FROM python:3.11.14-slim-bookworm

# tini as PID 1 forwards SIGTERM to gunicorn and reaps orphaned processes; pinned to
# bookworm's build (a rebuild of the package by Debian changes the suffix). The app user
# has a fixed UID/GID, so volume ownership and Kubernetes' runAsUser can name it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app

# Code and venv in /app, owned by root: the app user can run them but never change them.
WORKDIR /app

# The venv built above (no uv or cache comes with it).
COPY --from=builder /app/.venv /app/.venv

# What gunicorn and alembic read (pyproject.toml holds [tool.alembic]; uv.lock tells image
# scanners exactly what is installed). .dockerignore admits nothing else.
COPY gunicorn.conf.py pyproject.toml uv.lock ./
COPY migrations ./migrations
COPY chassis ./chassis
COPY app ./app

# Inherited by the server, the migration step and the health check (see the top).
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GUNICORN_BIND=0.0.0.0:8000 \
    APP_ENV=production

# Never root at run time; numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# gunicorn's port (GUNICORN_BIND above); nginx reaches it as app:8000. 9100 is the metrics
# port, served only where METRICS_BIND is set (compose.yaml and Kubernetes set it).
EXPOSE 8000 9100

# gunicorn's graceful shutdown: stop accepting, finish requests within graceful_timeout.
STOPSIGNAL SIGTERM

# Liveness through /healthz, which never touches the database (a database outage must not
# mark every container unhealthy). The check's own timeout (3 s, chassis/serving/probe.py) is
# inside --timeout; --start-period covers gunicorn booting its workers, probed every 2 s
# meanwhile (Docker 25+), so compose's `service_healthy` waits seconds, not a 30 s interval.
# It imports only the standard library: a cheap process every 30 s.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --start-interval=2s --retries=3 \
    CMD ["python", "-m", "chassis.serving.probe"]

# tini runs the command as its child: signals reach gunicorn's master, zombies are reaped.
ENTRYPOINT ["tini", "--"]

# Exec form: gunicorn is tini's direct child, with no shell in between to swallow SIGTERM.
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
