#!/usr/bin/env bash
# helm: the chart checks (tests/src/chart.test.ts) lint and render charts/concord with the real helm.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
HELM_VERSION="v3.19.0"
if ! stamp_matches helm "$HELM_VERSION"; then
  require_go helm
  echo "install-tools: building helm ${HELM_VERSION} with go install"
  GOBIN="$bin" go install "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
  write_stamp helm "$HELM_VERSION"
fi
echo "install-tools: helm ${HELM_VERSION} in .tools/bin"
