#!/usr/bin/env bash
# h2spec: the HTTP/2 conformance suite the lean HTTP/2 server is tested with (packages/runtime,
# h2/h2spec.test.ts).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
go_tool h2spec "v2.2.1+incompatible" github.com/summerwind/h2spec/cmd/h2spec GOFLAGS=-mod=mod
