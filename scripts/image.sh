#!/usr/bin/env bash
# Builds the Concord container image from deploy/Dockerfile: `bash scripts/image.sh`.
#
#   --tag <name>    the image to build (default concord:dev, or $CONCORD_IMAGE)
#   --base <image>  build FROM this image as it is, e.g. the official node:26-bookworm-slim where a
#                   registry is reachable; without it, the local stand-in described below
#
# By default the image is built FROM concord-ci/node:<major>-<suite>-slim, a local stand-in of the
# official Node image that needs no registry: Debian <suite> (minbase, from the Debian mirror this
# machine's apt uses), the Node binary the repository pins (the `node` devDependency), the npm that
# Node release ships with, and libatomic1, which that binary links against. Major and suite come
# from the BASE_IMAGE default in deploy/Dockerfile, which must name the pinned Node's major. The
# stand-in is rebuilt only when its recipe label differs (another Node binary, npm, mirror or
# recipe); Docker's layer cache takes care of the rest.
#
# Docker's legacy builder (DOCKER_BUILDKIT=0) and --network host: it uses a local base image without
# contacting a registry, and the daemon may run without a bridge network. Needs a running Docker
# (`bash scripts/install-tools.sh docker`); the stand-in needs debootstrap and root (or sudo).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { echo "image: $*"; }
fail() {
  echo "image: $*" >&2
  exit 1
}

tag="${CONCORD_IMAGE:-concord:dev}"
base=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --tag) [ "$#" -ge 2 ] || fail "--tag needs an image name"; tag="$2"; shift 2 ;;
    --base) [ "$#" -ge 2 ] || fail "--base needs an image name"; base="$2"; shift 2 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) fail "unknown argument \"$1\" (--tag <name>, --base <image>)" ;;
  esac
done

docker info >/dev/null 2>&1 || fail "Docker does not answer (docker info failed); start it with: bash scripts/install-tools.sh docker"

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"

# --- the stand-in base image ----------------------------------------------------------------

# The mirror of `suite` in this machine's apt sources (deb822 *.sources or one-line *.list), else
# `fallback`: the stand-in comes from where this machine's apt already installs packages from.
apt_mirror() {
  local suite="$1" fallback="$2" found=""
  local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  local file
  for file in "${files[@]}"; do
    [ -f "$file" ] || continue
    if [[ "$file" == *.sources ]]; then
      found="$(awk -v suite="$suite" 'BEGIN { RS = ""; FS = "\n" }
        {
          uri = ""; hit = 0; enabled = 1
          for (i = 1; i <= NF; i++) {
            if ($i ~ /^URIs:/) { split(substr($i, 6), u, " "); for (k in u) if (u[k] != "") { uri = u[k]; break } }
            if ($i ~ /^Suites:/) { n = split(substr($i, 8), s, " "); for (j = 1; j <= n; j++) if (s[j] == suite) hit = 1 }
            if ($i ~ /^Enabled:[ \t]*no/) enabled = 0
            if ($i ~ /^Types:/ && $i !~ /[ \t]deb([ \t]|$)/) enabled = 0
          }
          if (hit && enabled && uri != "") { print uri; exit }
        }' "$file")"
    else
      found="$(awk -v suite="$suite" '$1 == "deb" {
          i = 2; if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
          if ($(i + 1) == suite) { print $i; exit }
        }' "$file")"
    fi
    if [ -n "$found" ]; then
      echo "${found%/}"
      return
    fi
  done
  echo "$fallback"
}

# The npm the pinned Node release ships with: the newest "upgrade npm to X" of its changelog, which
# covers that release line, newest first. CONCORD_BASE_NPM_VERSION overrides it.
bundled_npm_version() {
  if [ -n "${CONCORD_BASE_NPM_VERSION:-}" ]; then
    echo "$CONCORD_BASE_NPM_VERSION"
    return
  fi
  local changelog
  changelog="$(find node_modules/node/node_modules -maxdepth 2 -path '*/node-linux-*/CHANGELOG.md' 2>/dev/null | head -n 1)"
  [ -n "$changelog" ] || fail "cannot find the pinned Node's CHANGELOG.md to learn its npm version; set CONCORD_BASE_NPM_VERSION"
  local version
  version="$(grep -m 1 -o 'upgrade npm to [0-9][0-9.]*' "$changelog" | awk '{ print $4 }')"
  [ -n "$version" ] || fail "no npm upgrade in $changelog; set CONCORD_BASE_NPM_VERSION"
  echo "$version"
}

# Builds the stand-in into the image $base_tag. Everything it depends on is in its arguments or in
# this function's text, both of which make up the recipe label.
build_base() {
  local suite="$1" mirror="$2" security_mirror="$3" node_bin="$4" node_version="$5" npm_version="$6" recipe="$7"
  local cache="$root/.tools/cache/image-base"
  mkdir -p "$cache/debootstrap"

  local npm_tarball="$cache/npm-$npm_version.tgz"
  if [ ! -s "$npm_tarball" ]; then
    say "fetching npm $npm_version (the npm of Node $node_version)"
    local packed
    packed="$(cd "$cache" && npm pack --silent "npm@$npm_version")" || fail "npm pack npm@$npm_version failed"
    [ "$cache/$packed" = "$npm_tarball" ] || mv "$cache/$packed" "$npm_tarball"
  fi

  work="$(mktemp -d -t concord-base.XXXXXX)"
  local rootfs="$work/rootfs"
  say "debootstrap --variant=minbase $suite from $mirror (a minute or two; log: .tools/cache/image-base/debootstrap.log)"
  if ! $sudo debootstrap --variant=minbase --include=libatomic1 --cache-dir="$cache/debootstrap" \
      "$suite" "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1; then
    tail -n 30 "$cache/debootstrap.log" >&2
    fail "debootstrap failed (full log: .tools/cache/image-base/debootstrap.log)"
  fi
  unmount_under "$rootfs"

  say "adding Node $node_version and npm $npm_version"
  $sudo install -m 0755 "$node_bin" "$rootfs/usr/local/bin/node"
  $sudo mkdir -p "$rootfs/usr/local/lib/node_modules/npm"
  $sudo tar -xzf "$npm_tarball" -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
  $sudo ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  $sudo ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  # The same apt sources as Debian's own images; none of this machine's files (host name, resolver,
  # package caches) stays in the image.
  $sudo rm -f "$rootfs/etc/apt/sources.list" "$rootfs/etc/hostname" "$rootfs/etc/resolv.conf"
  printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" "$suite" "$suite" "$security_mirror" "$suite" | $sudo tee "$rootfs/etc/apt/sources.list.d/debian.sources" >/dev/null
  # Trimmed and configured as Debian's own images are (debuerreotype's slimify and apt settings): no
  # documentation but copyrights, manual pages or translations, and apt leaves no caches in a layer.
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' 'path-exclude /usr/share/groff/*' \
    'path-exclude /usr/share/info/*' 'path-exclude /usr/share/linda/*' 'path-exclude /usr/share/lintian/overrides/*' \
    'path-exclude /usr/share/locale/*' 'path-exclude /usr/share/man/*' | $sudo tee "$rootfs/etc/dpkg/dpkg.cfg.d/docker" >/dev/null
  local clean='"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true";'
  printf 'DPkg::Post-Invoke { %s };\nAPT::Update::Post-Invoke { %s };\nDir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n' "$clean" "$clean" |
    $sudo tee "$rootfs/etc/apt/apt.conf.d/docker-clean" >/dev/null
  echo 'Acquire::Languages "none";' | $sudo tee "$rootfs/etc/apt/apt.conf.d/docker-no-languages" >/dev/null
  echo 'Acquire::GzipIndexes "true";' | $sudo tee "$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes" >/dev/null
  echo 'Apt::AutoRemove::SuggestsImportant "false";' | $sudo tee "$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests" >/dev/null
  $sudo find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  $sudo sh -c "rm -rf '$rootfs'/usr/share/groff/* '$rootfs'/usr/share/info/* '$rootfs'/usr/share/linda/* '$rootfs'/usr/share/lintian/overrides/* '$rootfs'/usr/share/locale/* '$rootfs'/usr/share/man/*"
  $sudo sh -c "rm -rf '$rootfs'/var/cache/apt/archives/*.deb '$rootfs'/var/cache/apt/*.bin '$rootfs'/var/lib/apt/lists/* '$rootfs'/var/log/* '$rootfs'/dev/* '$rootfs'/tmp/*"
  $sudo chroot "$rootfs" /usr/local/bin/node --version >/dev/null || fail "the Node binary does not run in the stand-in (libatomic1 missing?)"
  $sudo chroot "$rootfs" /usr/local/bin/node /usr/local/lib/node_modules/npm/bin/npm-cli.js --version >/dev/null || fail "npm does not run in the stand-in"

  say "importing $base_tag"
  $sudo tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV NODE_VERSION=${node_version#v}" \
    --change "LABEL org.concord.base.node=$node_version org.concord.base.npm=$npm_version org.concord.base.recipe=$recipe" \
    --change 'CMD ["node"]' \
    - "$base_tag" >/dev/null || fail "docker import of $base_tag failed"
}

# Unmounts whatever debootstrap left mounted below $1 (deepest first), so removing it cannot reach
# the host's /proc or /sys.
unmount_under() {
  local dir="$1" mount
  awk -v dir="$dir" '$2 == dir || index($2, dir "/") == 1 { print $2 }' /proc/mounts | sort -r | while read -r mount; do
    $sudo umount -l "$mount" || true
  done
}

# The certificates this machine trusts beyond the public roots (Node's own, and Debian's when its
# ca-certificates is installed): those a network that inspects TLS makes every client trust. The
# build stages hand them to npm (EXTRA_CA_CERTS in deploy/Dockerfile); the image never gets them.
local_ca_certs() {
  local node_cmd="$root/node_modules/.bin/node"
  [ -x "$node_cmd" ] || node_cmd=node
  local files=()
  [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f "$NODE_EXTRA_CA_CERTS" ] && files+=("$NODE_EXTRA_CA_CERTS")
  local npm_cafile
  npm_cafile="$(npm config get cafile 2>/dev/null || true)"
  [ -n "$npm_cafile" ] && [ -f "$npm_cafile" ] && files+=("$npm_cafile")
  [ "${#files[@]}" -gt 0 ] || return 0
  "$node_cmd" -e '
    const { readFileSync, readdirSync } = require("node:fs");
    const { rootCertificates } = require("node:tls");
    const { X509Certificate } = require("node:crypto");
    const pems = (text) => text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    const fingerprint = (pem) => { try { return new X509Certificate(pem).fingerprint256; } catch { return undefined; } };
    const publicRoots = new Set(rootCertificates.map(fingerprint));
    const debianRoots = "/usr/share/ca-certificates/mozilla";
    let names = [];
    try { names = readdirSync(debianRoots); } catch {}
    for (const name of names) for (const pem of pems(readFileSync(`${debianRoots}/${name}`, "utf8"))) publicRoots.add(fingerprint(pem));
    const local = new Map();
    for (const file of process.argv.slice(1)) {
      for (const pem of pems(readFileSync(file, "utf8"))) {
        const id = fingerprint(pem);
        if (id !== undefined && !publicRoots.has(id)) local.set(id, pem);
      }
    }
    process.stdout.write([...local.values()].join("\n"));
  ' "${files[@]}"
}

work=""
cleanup() {
  if [ -n "$work" ] && [ -d "$work" ]; then
    unmount_under "$work"
    $sudo rm -rf --one-file-system "$work"
  fi
}
trap cleanup EXIT

started=$SECONDS
if [ -z "$base" ]; then
  default_base="$(sed -n 's/^ARG BASE_IMAGE=//p' deploy/Dockerfile | head -n 1)"
  [[ "$default_base" =~ ^node:([0-9]+)-([a-z]+)-slim$ ]] ||
    fail "deploy/Dockerfile: expected ARG BASE_IMAGE=node:<major>-<suite>-slim, found \"$default_base\""
  base_major="${BASH_REMATCH[1]}"
  suite="${BASH_REMATCH[2]}"

  node_bin="$root/node_modules/node/bin/node"
  if [ ! -x "$node_bin" ]; then
    say "installing dependencies first (the stand-in is built around the pinned Node binary)"
    node scripts/setup.mjs --quiet
  fi
  [ -x "$node_bin" ] || fail "no pinned Node binary at node_modules/node/bin/node after setup"
  node_bin="$(readlink -f "$node_bin")"
  node_version="$("$node_bin" --version)" || fail "the pinned Node binary does not run (libatomic1: bash scripts/install-tools.sh libatomic)"
  node_major="${node_version#v}"
  node_major="${node_major%%.*}"
  [ "$node_major" = "$base_major" ] ||
    fail "deploy/Dockerfile builds FROM node:$base_major, but the repository pins Node $node_version (package.json): update ARG BASE_IMAGE"

  npm_version="$(bundled_npm_version)"
  mirror="$(apt_mirror "$suite" http://deb.debian.org/debian)"
  security_mirror="$(apt_mirror "$suite-security" http://deb.debian.org/debian-security)"
  base_tag="concord-ci/node:$base_major-$suite-slim"
  recipe="$({
    echo "$suite $mirror $security_mirror $node_version $npm_version"
    sha256sum "$node_bin" | cut -d' ' -f1
    declare -f build_base
  } | sha256sum | cut -c1-16)"

  current="$(docker image inspect --format '{{ index .Config.Labels "org.concord.base.recipe" }}' "$base_tag" 2>/dev/null || true)"
  if [ "$current" = "$recipe" ]; then
    say "$base_tag is up to date (Node $node_version, npm $npm_version, recipe $recipe)"
  else
    command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] ||
      fail "building the stand-in $base_tag needs debootstrap: bash scripts/install-tools.sh docker"
    export PATH="$PATH:/usr/sbin:/sbin"
    base_started=$SECONDS
    say "building the stand-in base $base_tag (${current:+recipe changed: $current -> }recipe $recipe)"
    build_base "$suite" "$mirror" "$security_mirror" "$node_bin" "$node_version" "$npm_version" "$recipe"
    cleanup
    work=""
    say "built $base_tag in $((SECONDS - base_started))s"
  fi
  base="$base_tag"
else
  docker image inspect "$base" >/dev/null 2>&1 ||
    say "$base is not here; Docker will pull it (needs a reachable registry)"
fi

build_args=(--build-arg "BASE_IMAGE=$base")
extra_ca="$(local_ca_certs)" || fail "could not read the CA certificates this machine trusts"
if [ -n "$extra_ca" ]; then
  # A build argument is one command-line string, which Linux caps at 128 KiB.
  [ "${#extra_ca}" -lt 120000 ] || fail "this machine trusts too many extra CA certificates to pass to the build (${#extra_ca} bytes)"
  say "npm in the build trusts $(grep -c 'BEGIN CERTIFICATE' <<<"$extra_ca") CA certificate(s) this machine adds to the public roots"
  build_args+=(--build-arg "EXTRA_CA_CERTS=$extra_ca")
fi

build_started=$SECONDS
say "building $tag from deploy/Dockerfile on $base"
# No --pull: a base image that is here is used as it is (the legacy builder pulls only a missing
# one), which is why BuildKit, which asks the registry about every base, is off.
set +e
DOCKER_BUILDKIT=0 docker build --force-rm --network host "${build_args[@]}" -f deploy/Dockerfile -t "$tag" . 2>&1 |
  grep --line-buffered -v -e '^DEPRECATED: The legacy builder' -e 'BuildKit is currently disabled' \
    -e '^ *environment-variable\.$' -e 'Install the buildx component' -e 'docs.docker.com/go/buildx' -e '^ *$'
status="${PIPESTATUS[0]}"
set -e
[ "$status" = 0 ] || fail "docker build of $tag failed (exit $status)"
size="$(docker image inspect --format '{{ .Size }}' "$tag")"
say "built $tag in $((SECONDS - build_started))s ($((size / 1000000)) MB; $((SECONDS - started))s in all)"
