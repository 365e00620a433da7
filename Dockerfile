# syntax=docker/dockerfile:1
# The llmgw image: one image for every process (`llmgw serve NAME`), the one the
# Helm chart in helm/llmgw runs by default.
#
#   docker build -t llmgw/llmgw:0.1.0 .
#   docker run --rm -p 50051:50051 llmgw/llmgw:0.1.0 serve gateway --host 0.0.0.0
#
# Stage `build` installs the project into a virtual environment; the runtime
# stage copies only that environment, and runs as an unprivileged user whose
# id matches the chart's securityContext (10001). The root filesystem can be
# read-only: bytecode is compiled at build time, and everything a process
# writes goes to /var/lib/llmgw (its working directory) or /tmp.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/llmgw
WORKDIR /src
COPY pyproject.toml README.md ./
COPY llmgw ./llmgw
COPY services ./services
COPY gateway ./gateway
COPY provider_adapters ./provider_adapters
COPY config ./config
RUN /opt/llmgw/bin/pip install --no-compile . \
 && site="$(/opt/llmgw/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && cp -r config "$site/config" \
 && /opt/llmgw/bin/python -m compileall -q -j 0 /opt/llmgw/lib \
 && /opt/llmgw/bin/llmgw services

FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PATH=/opt/llmgw/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 llmgw \
 && useradd --system --uid 10001 --gid llmgw --home-dir /var/lib/llmgw \
      --no-create-home --shell /usr/sbin/nologin llmgw \
 && install -d -o llmgw -g llmgw -m 0750 /var/lib/llmgw
COPY --from=build /opt/llmgw /opt/llmgw
WORKDIR /var/lib/llmgw
USER 10001:10001
# gRPC: gateway, inference, models, finetuning, usage; the HTTP edge; metrics.
EXPOSE 50051 50052 50053 50054 50055 8080 9090
ENTRYPOINT ["llmgw"]
CMD ["serve", "gateway", "--host", "0.0.0.0"]
