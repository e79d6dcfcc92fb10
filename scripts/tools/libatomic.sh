#!/usr/bin/env bash
# libatomic1: the pinned Node LTS binary links against it (Debian package).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if ! ldconfig -p 2>/dev/null | grep -q 'libatomic.so.1'; then
  echo "install-tools: installing libatomic1 (needed by the pinned Node binary)"
  apt_install libatomic1
fi
