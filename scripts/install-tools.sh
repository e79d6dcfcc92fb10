#!/usr/bin/env bash
# Installs the machine-level tools Concord's tests and docs use, into .tools/bin of the repository
# (put it on PATH: `export PATH="$PWD/.tools/bin:$PATH"`), and starts the services they need.
# Idempotent: what is already installed is kept. One script per tool in scripts/tools/, run in
# name order; `bash scripts/install-tools.sh grpcurl helm` runs only those.
set -euo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/tools"
if [ "$#" -gt 0 ]; then
  for tool in "$@"; do bash "$dir/$tool.sh"; done
else
  for script in "$dir"/[!_]*.sh; do
    [ "$(basename "$script")" = common.sh ] && continue
    bash "$script"
  done
fi
