# reconciler: build a virtualenv in one stage, copy it into a slim runtime that runs as a non-root user.
# No database lives in the image: set RECONCILER_DATABASE_URL (PostgreSQL for replicas); without it the default
# is a SQLite file on the /var/lib/reconciler volume.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY reconciler reconciler
COPY jobs jobs
COPY sql sql
RUN python -m venv /opt/reconciler && /opt/reconciler/bin/pip install --no-cache-dir .

FROM python:3.11-slim
COPY --from=build /opt/reconciler /opt/reconciler
RUN groupadd --system --gid 10001 reconciler \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin reconciler \
    && install -d -o 10001 -g 10001 /var/lib/reconciler
# The listeners answer from outside the container (the admin one only on the cluster's network, never published
# to the internet); settings come from RECONCILER_* variables or a file mounted at RECONCILER_CONFIG.
ENV PATH=/opt/reconciler/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RECONCILER_RECEIVER_HOST=0.0.0.0 \
    RECONCILER_ADMIN_HOST=0.0.0.0 \
    RECONCILER_DATABASE_URL=sqlite:////var/lib/reconciler/reconciler.db
WORKDIR /var/lib/reconciler
VOLUME ["/var/lib/reconciler"]
USER 10001:10001
# public listener (provider webhooks, partner intake) and admin listener (/metrics, /healthz, /readyz)
EXPOSE 8080 9100
# the image has no curl: Python asks /healthz (the main loop is alive)
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RECONCILER_ADMIN_PORT', '9100'), timeout=4)"]
ENTRYPOINT ["reconciler"]
CMD ["run"]
