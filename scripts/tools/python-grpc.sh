#!/usr/bin/env bash
# Python with grpcio and grpcio-tools in .tools/python: the cross-language test
# (tests/src/python-client.test.ts) generates Python code from proto/ and calls a real cluster with
# gRPC's C-core, an HTTP/2 stack other than Go's (grpcurl) and Node's (the SDK).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
GRPCIO_VERSION="1.85.1"
venv="$root/.tools/python"
if ! stamp_matches python-grpc "$GRPCIO_VERSION" || [ ! -x "$venv/bin/python" ]; then
  command -v python3 >/dev/null 2>&1 || apt_install python3
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    apt_install python3-venv
  fi
  echo "install-tools: grpcio ${GRPCIO_VERSION} and grpcio-tools into .tools/python"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "grpcio==${GRPCIO_VERSION}" "grpcio-tools==${GRPCIO_VERSION}"
  # The tests run .tools/bin/python-grpc (a link would not find the virtual environment).
  printf '#!/bin/sh\nexec "%s/bin/python" "$@"\n' "$venv" > "$bin/python-grpc"
  chmod +x "$bin/python-grpc"
  write_stamp python-grpc "$GRPCIO_VERSION"
fi
echo "install-tools: grpcio ${GRPCIO_VERSION} in .tools/python"
