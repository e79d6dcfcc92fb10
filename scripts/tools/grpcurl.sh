#!/usr/bin/env bash
# grpcurl: the README's grpcurl examples are run by the tests exactly as written.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
GRPCURL_VERSION="v1.9.3"
if ! stamp_matches grpcurl "$GRPCURL_VERSION"; then
  require_go grpcurl
  echo "install-tools: building grpcurl ${GRPCURL_VERSION} with go install"
  GOBIN="$bin" GOFLAGS=-mod=mod go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@${GRPCURL_VERSION}"
  write_stamp grpcurl "$GRPCURL_VERSION"
fi
echo "install-tools: grpcurl ${GRPCURL_VERSION} in .tools/bin"
