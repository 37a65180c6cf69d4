# plugin-operator: one image for the operator, the gateway and the plugin host.
#
#   hack/image.sh build          (builds the wheels, picks or builds the base, runs this)
#
# By hand: the wheels of our dependencies go into dist/wheels/deps and our own wheel into
# dist/wheels/app, and the static copy-tree and plugin-front programs into dist/tools, e.g.
#   pip wheel --wheel-dir dist/wheels/deps . && mkdir -p dist/wheels/app &&
#   mv dist/wheels/deps/plugin_operator-*.whl dist/wheels/app/ &&
#   (cd tools/copy-tree && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o ../../dist/tools/copy-tree .) &&
#   (cd tools/plugin-front && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o ../../dist/tools/plugin-front .)
#   docker build --network none --build-arg BASE_IMAGE=python:3.11-slim-bookworm \
#     -t plugin-operator.dev/plugin-operator:0.1.0 .
# The build installs only those wheels (--no-index): it never needs the network. The base
# must provide CPython 3.11 with the venv module (python:3.11-slim-bookworm, or Debian
# bookworm's python3 + python3-venv, which hack/image.sh builds offline).
#
# Commands: `plugin-operator operator`, `plugin-operator gateway`,
# `plugin-operator host <plugin-dir>`. Runs as uid 65532 and works with a read-only root
# filesystem: give it writable emptyDir volumes for /tmp and the plugin directory.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# The dependencies: one layer that changes only when pyproject.toml does.
FROM ${BASE_IMAGE} AS dependencies
COPY dist/wheels/deps/ /wheels/
RUN python3 -m venv /opt/plugin-operator \
 && /opt/plugin-operator/bin/python -m pip install --no-index --no-cache-dir \
      --disable-pip-version-check /wheels/*.whl \
 && /opt/plugin-operator/bin/python -m pip uninstall --yes --quiet pip setuptools \
 && find /opt/plugin-operator -name '*.pyi' -delete
# Size: pyarrow ships headers, Cython sources, its tests, duplicated copies of its shared
# libraries, and Flight and S3 support, none of which we use (about 75 MB). The import
# check after it fails the build if a later pyarrow needs what was removed.
RUN cd /opt/plugin-operator/lib/python3.11/site-packages/pyarrow \
 && rm -rf include includes src tests *.pyx *.pxd *.pxi \
      _flight.* flight.py libarrow_flight.so* libarrow_python_flight.so* \
      _s3fs.* libarrow_s3.so* _pyarrow_cpp_tests.* \
 && for lib in libarrow_python libarrow_python_parquet_encryption; do \
      find . -maxdepth 1 -name "$lib.so*" ! -name "$lib.so.[0-9]*[0-9]" -delete; \
      find . -maxdepth 1 -name "$lib.so.*.*" -delete; \
    done \
 && cd / && /opt/plugin-operator/bin/python -c 'import pyarrow, pyarrow.compute, pyarrow.ipc'

# Our package, staged under /stage as the files it adds to the final image, so that layer
# holds our code only.
FROM dependencies AS app
COPY dist/wheels/app/ /wheels/
RUN site=/stage/opt/plugin-operator/lib/python3.11/site-packages \
 && python3 -m venv /tmp/installer \
 && /tmp/installer/bin/python -m pip install --no-index --no-deps --no-compile --quiet \
      --disable-pip-version-check --target "$site" /wheels/plugin_operator-*.whl \
 && rm -rf "$site/bin" \
 && mkdir -p /stage/opt/plugin-operator/bin \
 && printf '%s\n' '#!/opt/plugin-operator/bin/python' 'import sys' \
      'from plugin_operator.cli import main' 'sys.exit(main())' \
      > /stage/opt/plugin-operator/bin/plugin-operator \
 && chmod 755 /stage/opt/plugin-operator/bin/plugin-operator \
 && cd / && PYTHONPATH="$site" /opt/plugin-operator/bin/python -c 'import plugin_operator.cli'

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="plugin-operator" \
      org.opencontainers.image.description="Grafana plugin backends on Kubernetes: operator, gateway, plugin host" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN echo 'plugin-operator:x:65532:65532::/tmp:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'plugin-operator:x:65532:' >> /etc/group \
 && mkdir -p /plugins && chown 65532:65532 /plugins
COPY --from=dependencies /opt/plugin-operator /opt/plugin-operator
COPY --from=app /stage/ /
# Static, for plugins delivered as images: it runs inside the plugin's image (even one
# built FROM scratch) to copy the plugin directory out. hack/image.sh builds it with Go.
COPY dist/tools/copy-tree /opt/plugin-operator/bin/copy-tree
# Static: serves each plugin's gRPC ports for `plugin-operator host` (only pluginv2 and
# health; the attach port balances calls over the Plugin's replicas).
COPY dist/tools/plugin-front /opt/plugin-operator/bin/plugin-front
# Bytecode now, because the root filesystem is read-only at run time.
RUN /opt/plugin-operator/bin/python -m compileall -q \
      /opt/plugin-operator/lib/python3.11/site-packages/plugin_operator
ENV PATH=/opt/plugin-operator/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["plugin-operator"]
CMD ["--help"]
