# syntax=docker/dockerfile:1
# extworker worker image, per device:
#   docker build -t extworker:cpu .
#   docker build -t extworker:cuda --build-arg DEVICE=cuda .
#   docker build --build-arg MODELS="u2netp efficientnet-lite0 siglip-base blip-caption-base" .
# Models are pulled at build time into /models; nothing downloads at run time.
ARG PYTHON_VERSION=3.11

# --- build: a virtual environment with extworker and its device's runtimes ---------
FROM python:${PYTHON_VERSION}-slim AS build
ARG DEVICE=cpu
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY extensions ./extensions
COPY webhooks ./webhooks
# torch first and pinned, so the vision extra never pulls another build. CPU images take
# the CPU wheel; CUDA images take the CUDA wheel (its CUDA libraries also serve
# onnxruntime-gpu) and swap onnxruntime for onnxruntime-gpu.
# hadolint ignore=DL3013
RUN if [ "$DEVICE" = "cuda" ]; then \
      pip install "torch==${TORCH_VERSION}" \
      && pip install ".[bg,vision,api,s3,video]" \
      && pip uninstall -y onnxruntime \
      && pip install ".[gpu]"; \
    else \
      pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}" \
      && pip install ".[bg,vision,api,s3,video]"; \
    fi

# --- models: pulled once, verified, copied into the final image ---------------------
FROM build AS models
ARG MODELS="u2netp efficientnet-lite0"
ENV EXTWORKER_MODELS_DIR=/models
RUN mkdir -p /models && for model in $MODELS; do extworker models pull "$model"; done

# --- final: no compilers, no build tools, a non-root user ----------------------------
FROM python:${PYTHON_VERSION}-slim AS final
ARG DEVICE=cpu
LABEL org.opencontainers.image.title="extworker" \
      org.opencontainers.image.description="Media-library extensions on your own CPU/GPU nodes"
# ExifTool reads embeddedMetadata and writes a cut-out's rights metadata.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libimage-exiftool-perl \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --no-log-init --create-home --uid 10001 extworker \
    && mkdir -p /data /opt/numba-cache \
    && chown extworker /data /opt/numba-cache
COPY --from=build /opt/venv /opt/venv
COPY --from=models --chown=extworker /models /models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    EXTWORKER_MODELS_DIR=/models \
    EXTWORKER_DATA_DIR=/data \
    EXTWORKER_DEVICE=${DEVICE} \
    EXTWORKER_HTTP_PORT=9191 \
    HF_HUB_OFFLINE=1 \
    NUMBA_CACHE_DIR=/opt/numba-cache
USER 10001
# rembg's import compiles pymatting's numba kernels (about a minute on 2 cores). Do it
# once here, into NUMBA_CACHE_DIR, so no worker pays it on its first remove-bg job.
RUN python -c "import rembg"
WORKDIR /data
# 9191: a worker's health and metrics; 8080: `extworker api` (same image, args: api).
EXPOSE 9191 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9191/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["extworker"]
CMD ["serve"]
