#!/usr/bin/env bash
# helm: the chart checks (tests/src/chart.test.ts) lint and render charts/concord with the real helm.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
go_tool helm "v3.19.0" helm.sh/helm/v3/cmd/helm
