# genserve image: serves the ONNX models in /srv/models; no torch unless WITH_TORCH=true.
#
# Tagged genserve:<version in pyproject.toml>, the name compose and deploy/ use (README, "Docker and compose"):
#   docker build -t genserve:0.1.0 .                                   # CPU, ONNX only
#   docker build --build-arg WITH_TORCH=true -t genserve:0.1.0-torch . # + torch, for TorchScript models
#   docker build --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 \
#                --build-arg ONNXRUNTIME=onnxruntime-gpu -t genserve:0.1.0-gpu .   # GPU (not built in CI)
#
# Behind a TLS-intercepting proxy, pass its CA as a build secret (never stored in a layer):
#   DOCKER_BUILDKIT=1 docker build --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt -t genserve:0.1.0 .

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS base
# python:*-slim has python3 and venv; a CUDA (Ubuntu) base gets them from apt. Versions come
# from the base image's release, so they are not pinned here.
# hadolint ignore=DL3008
RUN if ! python3 -c "import venv, ensurepip" 2>/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi

FROM base AS build
ARG WITH_TORCH=false
ARG ONNXRUNTIME=onnxruntime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY core ./core
COPY app ./app
COPY training ./training
# Install the serve extra's dependencies into the venv (the project itself runs from /srv/app).
# The versions are those pyproject.toml allows; the project is the lock.
# hadolint ignore=DL3013,SC1091
RUN --mount=type=secret,id=ca,required=false \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && extras="serve" && if [ "$WITH_TORCH" = "true" ]; then extras="serve,torch"; fi \
    && /opt/venv/bin/pip install ".[$extras]" \
    && if [ "$ONNXRUNTIME" != "onnxruntime" ]; then \
        /opt/venv/bin/pip uninstall -y onnxruntime && /opt/venv/bin/pip install "$ONNXRUNTIME"; \
    fi \
    && /opt/venv/bin/pip uninstall -y genserve \
    && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM base AS runtime
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin genserve
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv
COPY --chown=root:root core ./core
COPY --chown=root:root app ./app
COPY --chown=root:root models ./models
# Read-only root file system friendly: no bytecode written, nothing else written outside /tmp.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GENSERVE_HOST=0.0.0.0 \
    GENSERVE_PORT=8000 \
    GENSERVE_MODEL_DIR=/srv/models
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GENSERVE_PORT', '8000') + '/readyz', timeout=2)"]
CMD ["python3", "-m", "app"]
