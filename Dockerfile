FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml setup.cfg README.md config.yaml ./
COPY reconciler reconciler
COPY jobs jobs
COPY sql sql
RUN pip install --no-cache-dir . && useradd --system reconciler && chown reconciler /app
USER reconciler
# public listener (provider webhooks, partner intake) and admin listener (/metrics, probes)
EXPOSE 8080 9100
ENTRYPOINT ["reconciler"]
CMD ["run"]
