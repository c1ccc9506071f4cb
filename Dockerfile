# cds: CDS Hooks 2.0 decision-support service. Slim, non-root, health-checked.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cds ./cds
RUN pip install --no-cache-dir --prefix=/install '.[postgres]'

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin cds \
    && mkdir -p /app /data /keys && chown cds:cds /data /keys && chmod 700 /data /keys
COPY --from=build /install /usr/local
COPY hooks.json /app/hooks.json
COPY models /app/models
WORKDIR /app
ENV CDS_HOST=0.0.0.0 \
    CDS_PORT=8080 \
    CDS_DATA_DIR=/data \
    CDS_HMAC_KEY_FILE=/keys/hmac.key \
    CDS_MODELS_DIR=/app/models \
    CDS_HOOKS_FILE=/app/hooks.json \
    PYTHONUNBUFFERED=1
USER cds
VOLUME ["/data", "/keys"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
CMD ["cds", "serve"]
