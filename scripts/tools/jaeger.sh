#!/usr/bin/env bash
# jaeger: Jaeger v2 (the OpenTelemetry Collector based all-in-one, traces kept in memory), for the
# test that reads a request's trace back from Jaeger and for `npm start -- --jaeger`.
#
# Built from its Go module inside a throwaway module: `go install pkg@version` refuses modules whose
# go.mod has replace directives, which Jaeger's has. The first build takes a few minutes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
JAEGER_VERSION="v1.76.0"
if ! stamp_matches jaeger "$JAEGER_VERSION"; then
  require_go jaeger
  # `go get -tool` needs Go 1.24, as does Jaeger itself.
  go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
  if ! [ "$go_minor" -ge 24 ] 2>/dev/null; then
    echo "install-tools: building jaeger needs Go 1.24 or newer (found $(go env GOVERSION)); https://go.dev/doc/install" >&2
    exit 1
  fi
  echo "install-tools: building jaeger ${JAEGER_VERSION} with go (a few minutes the first time)"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (
    cd "$work"
    go mod init concord.local/tools/jaeger >/dev/null 2>&1
    # `go get` lists every module it adds; show that only when it fails.
    if ! GOFLAGS=-mod=mod go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@${JAEGER_VERSION}" >get.log 2>&1; then
      cat get.log >&2
      echo "install-tools: go get of jaeger ${JAEGER_VERSION} failed" >&2
      exit 1
    fi
    GOBIN="$bin" GOFLAGS=-mod=mod go install github.com/jaegertracing/jaeger/cmd/jaeger
  )
  write_stamp jaeger "$JAEGER_VERSION"
fi
echo "install-tools: jaeger ${JAEGER_VERSION} in .tools/bin"
