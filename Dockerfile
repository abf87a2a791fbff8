# syntax=docker/dockerfile:1
# Written by `zephyr docker init --app examples.shop.app:app --python 3.11 --extra jobs --extra flower --extra cache --extra example` (zephyr-infra 0.1.0).
# Dependencies from setup.cfg. Edit freely: `zephyr docker init` leaves an existing
# Dockerfile alone unless given --force.

# ---- builder: install the dependencies into a virtual environment ----
FROM python:3.11-slim AS builder
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH="/opt/venv/bin:$PATH"
WORKDIR /src
RUN python -m venv /opt/venv
COPY . .
# The project and its dependencies, from setup.cfg, as a regular (not editable) install.
RUN pip install --no-cache-dir "./[jobs,flower,cache,example]"

# ---- final: the virtual environment and the app, nothing else ----
FROM python:3.11-slim
LABEL org.opencontainers.image.title="zephyr-infra" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.source="unknown"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH="/opt/venv/bin:$PATH"
# An unprivileged user with fixed ids (10001: above any host's system range), no home and
# no shell; it owns no file: the code and the virtual environment stay root's, read-only.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY examples ./examples
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4)"]
CMD ["zephyr", "serve", "--app", "examples.shop.app:app", "--host", "0.0.0.0", "--port", "8000"]
