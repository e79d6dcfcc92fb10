#!/usr/bin/env bash
# Installs the machine-level tools Concord's tests and docs use, into .tools/bin of the repository
# (put it on PATH: `export PATH="$PWD/.tools/bin:$PATH"`). Idempotent: already installed tools are
# kept. Needs Go for the Go-built tools.
#   grpcurl  — the README's grpcurl examples are run by the tests exactly as written.
#   libatomic1 — the pinned Node LTS binary links against it (Debian package).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/.tools/bin"
mkdir -p "$bin"

GRPCURL_VERSION="v1.9.3"

if ! ldconfig -p 2>/dev/null | grep -q 'libatomic.so.1'; then
  echo "install-tools: installing libatomic1 (needed by the pinned Node binary)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libatomic1 >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libatomic1 >/dev/null
  fi
fi

# `go install` builds report their version as "dev", so a stamp file records which one is installed.
if [ ! -x "$bin/grpcurl" ] || [ "$(cat "$bin/.grpcurl-version" 2>/dev/null)" != "$GRPCURL_VERSION" ]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "install-tools: Go is required to build grpcurl (https://go.dev/doc/install)" >&2
    exit 1
  fi
  echo "install-tools: building grpcurl ${GRPCURL_VERSION} with go install"
  GOBIN="$bin" GOFLAGS=-mod=mod go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@${GRPCURL_VERSION}"
  echo "$GRPCURL_VERSION" > "$bin/.grpcurl-version"
fi
echo "install-tools: grpcurl ${GRPCURL_VERSION} in .tools/bin"
