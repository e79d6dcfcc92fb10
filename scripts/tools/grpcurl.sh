#!/usr/bin/env bash
# grpcurl: the README's grpcurl examples are run by the tests exactly as written.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
go_tool grpcurl "v1.9.3" github.com/fullstorydev/grpcurl/cmd/grpcurl GOFLAGS=-mod=mod
