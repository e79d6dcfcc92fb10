#!/usr/bin/env bash
# docker: scripts/image.sh builds the container image and tests/src/container.test.ts runs it.
# Installs Docker (Debian's docker.io) and debootstrap (which builds the local stand-in of the Node
# base image when no registry is reachable), then makes sure a Docker daemon answers. A daemon
# started here uses host networking only (--bridge=none --iptables=false): it needs no bridge or
# firewall rules on the machine, and the containers of the tests listen on 127.0.0.1 like every
# other Concord process.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# How long a freshly started daemon gets to answer `docker info` (a liveness bound).
DOCKERD_START_TIMEOUT_S=60

missing=()
# The daemon, not just a client (a docker CLI may be installed on its own).
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-tools: installing ${missing[*]}"
  apt_install "${missing[@]}"
fi

if docker info >/dev/null 2>&1; then
  echo "install-tools: docker $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?') is running"
  exit 0
fi

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
if [ -S /var/run/docker.sock ] && $sudo docker info >/dev/null 2>&1; then
  echo "install-tools: dockerd runs, but $(id -un) may not use /var/run/docker.sock (join the docker group, then log in again)" >&2
  exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "install-tools: docker does not answer and there is no dockerd to start (install docker.io)" >&2
  exit 1
fi
log="$root/.tools/dockerd.log"
echo "install-tools: starting dockerd (host networking only); its log: .tools/dockerd.log"
# setsid: the daemon outlives this script and the terminal that ran it.
$sudo setsid dockerd --bridge=none --iptables=false >>"$log" 2>&1 < /dev/null &

deadline=$((SECONDS + DOCKERD_START_TIMEOUT_S))
until docker info >/dev/null 2>&1; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "install-tools: dockerd did not answer within ${DOCKERD_START_TIMEOUT_S}s; the end of .tools/dockerd.log:" >&2
    tail -n 30 "$log" >&2 || true
    exit 1
  fi
  sleep 1
done
echo "install-tools: docker $(docker version --format '{{.Server.Version}}') is running"
