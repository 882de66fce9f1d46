# An MMS host: Java 17 headless, Python 3.11 with the pinned serving packages
# (no torch: the archive is already converted to MXNet; protobuf for the
# handler's v2 gRPC messages), the built .mar and the
# project's own start/registration logic. Runs as the unprivileged user fizbuz.
# Built by serving/containers/containers.sh from a context it prepares
# (wheels/, app/, model_store/); see serving/containers/README.md.
ARG BASE=debian:bookworm-slim

# ---- build: a virtual environment from wheels downloaded on the build host
FROM ${BASE} AS build
LABEL fizbuz.stage=build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY wheels/ /wheels/
COPY requirements-image.txt /wheels/
RUN python3 -m venv /opt/fizbuz/venv \
 && /opt/fizbuz/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels \
        -r /wheels/requirements-image.txt \
 && /opt/fizbuz/venv/bin/pip uninstall -y -q pip setuptools \
 && find /opt/fizbuz/venv -name __pycache__ -prune -exec rm -rf {} +

# ---- runtime
FROM ${BASE}
# tini reaps what MMS leaves (killed workers) and passes SIGTERM on; mxnet's
# wheel needs libgomp and libquadmath from the system.
# (man1 must exist: openjdk's postinst links its man page there; -slim bases drop it.)
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless python3 libgomp1 libquadmath0 tini \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
 && useradd --system --uid 10001 --create-home --home-dir /home/fizbuz --shell /usr/sbin/nologin fizbuz
COPY --from=build /opt/fizbuz/venv /opt/fizbuz/venv
COPY app/ /opt/fizbuz/app/
COPY model_store/ /opt/fizbuz/model_store/
# Fail the build, not the first start, when a library is missing.
RUN /opt/fizbuz/venv/bin/python -c "import mxnet, mms, psutil, prometheus_client, google.protobuf" \
 && cd /opt/fizbuz/app && /opt/fizbuz/venv/bin/python -c "import fizbuz_v2, serving.containers.health" \
 && find /opt/fizbuz -name __pycache__ -prune -exec rm -rf {} +
ARG VERSION=dev
# No PYTHONPATH: MMS's workers inherit the environment, and the app's copy of
# the handler modules would shadow the archive's own (a model update must bring
# its own handler). The app is found as the working folder of `python3 -m`.
ENV PATH=/opt/fizbuz/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    FIZBUZ_MODEL_STORE=/opt/fizbuz/model_store \
    FIZBUZ_RUN_DIR=/home/fizbuz/run \
    FIZBUZ_IMAGE_VERSION=${VERSION} \
    FIZBUZ_INFERENCE_ADDRESS=0.0.0.0 \
    FIZBUZ_INFERENCE_PORT=8080 \
    FIZBUZ_MANAGEMENT_PORT=8081 \
    FIZBUZ_METRICS_PORT=8082 \
    FIZBUZ_WORKERS=1
LABEL org.opencontainers.image.title="fizbuz-mms" org.opencontainers.image.version="${VERSION}"
USER fizbuz
WORKDIR /opt/fizbuz/app
EXPOSE 8080
# Real predictions, the card's and a v2 one (MMS's /ping says 200 even when no
# worker can serve).
HEALTHCHECK --interval=3s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-m", "serving.containers.health"]
ENTRYPOINT ["tini", "--", "python3", "-m", "serving.containers.entrypoint"]
