#!/usr/bin/env bash
# Shared by the scripts in scripts/tools: where tools go and how they are installed.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$root/.tools/bin"
mkdir -p "$bin"

# apt_install <package>...: installs Debian packages (as root, or through sudo).
apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if [ -z "${CONCORD_APT_UPDATED:-}" ]; then
    $sudo apt-get update -qq
    export CONCORD_APT_UPDATED=1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# require_go <tool>: Go builds the Go tools; say so plainly when it is missing.
require_go() {
  if ! command -v go >/dev/null 2>&1; then
    echo "install-tools: Go is required to build $1 (https://go.dev/doc/install)" >&2
    exit 1
  fi
}

# stamp_matches <tool> <version>: `go install` builds report "dev", so a stamp file records which
# version of a tool is in .tools/bin.
stamp_matches() {
  [ -x "$bin/$1" ] && [ "$(cat "$bin/.$1-version" 2>/dev/null)" = "$2" ]
}
write_stamp() {
  echo "$2" > "$bin/.$1-version"
}

# go_tool <tool> <version> <package> [go env...]: builds <package>@<version> into .tools/bin with
# `go install` unless that version is there already.
go_tool() {
  local tool="$1" version="$2" package="$3"
  shift 3
  if ! stamp_matches "$tool" "$version"; then
    require_go "$tool"
    echo "install-tools: building $tool $version with go install"
    env GOBIN="$bin" "$@" go install "$package@$version"
    write_stamp "$tool" "$version"
  fi
  echo "install-tools: $tool $version in .tools/bin"
}
