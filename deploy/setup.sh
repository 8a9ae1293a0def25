#!/usr/bin/env bash
# Makes this machine ready to run and test the runner: npm packages, the kata helper, a
# Docker engine, the base image and the start-point images; with `deployment`, also the
# images of a deployment (deploy/compose.yml); with `test`, the tools the tests use.
# Idempotent: a second run only checks.
# Needs root (or sudo) the first time, for apt and dockerd.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# Image names are shared with the runner (lib/config.ts reads the same defaults).
BASE_IMAGE=${RUNNER_BASE_IMAGE:-cyber-dojo-runner/base:bookworm}
ROOTFS_PREFIX=cyber-dojo-runner/debian
ROOTFS_IMAGE=$ROOTFS_PREFIX:bookworm
IMAGE_PREFIX=${RUNNER_IMAGE_PREFIX:-cyber-dojo-runner/}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

step() { printf '\n==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# A line of progress every 10 s while a long command runs, its output kept in a log.
with_progress() {
  local log=$1; shift
  "$@" >"$log" 2>&1 &
  local pid=$! started=$SECONDS next=$((SECONDS + 10))
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if ((SECONDS >= next)); then
      note "... $((SECONDS - started))s: $(tail -n 1 "$log" | cut -c1-100)"
      next=$((SECONDS + 10))
    fi
  done
  if ! wait "$pid"; then
    tail -n 30 "$log" >&2
    printf 'setup: failed: %s (log: %s)\n' "$1" "$log" >&2
    return 1
  fi
}

npm_packages() {
  # package-lock.json is newer than the installed tree: npm ci brings it in line.
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    step "npm packages"
    npm ci --no-audit --no-fund --loglevel=error
  fi
}

engine_answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

docker_engine() {
  engine_answers && return 0
  if ! command -v dockerd >/dev/null 2>&1; then
    step "installing Debian's docker.io"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    with_progress /tmp/apt-docker.log as_root env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends docker.io
  fi
  if ! command -v docker >/dev/null 2>&1; then
    printf 'setup: no docker CLI after installing docker.io\n' >&2; return 1
  fi
  step "starting dockerd (log: $DOCKERD_LOG)"
  # No systemd here: dockerd runs detached from this shell, so it outlives the set-up.
  as_root sh -c "setsid dockerd >>'$DOCKERD_LOG' 2>&1 < /dev/null &"
  local waited=0
  until engine_answers; do
    sleep 1; waited=$((waited + 1))
    if [ "$waited" -ge 60 ]; then
      tail -n 20 "$DOCKERD_LOG" >&2
      printf 'setup: dockerd did not answer within 60 s\n' >&2; return 1
    fi
  done
  note "engine $(docker version --format '{{.Server.Version}}') answers after ${waited}s"
}

apt_install() { # packages, when a command of theirs is missing: $1 the command
  local command=$1; shift
  command -v "$command" >/dev/null 2>&1 && return 0
  apt_packages "$@"
}

apt_packages() {
  step "installing Debian's $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  with_progress "/tmp/apt-$1.log" as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# The helper every kata gets (lib/helper): a static binary, built with musl so that it
# needs nothing of the image it runs in. Rebuilt when its source changed.
kata_helper() {
  local binary=dist/kata-helper hash
  hash=$(folder_hash lib/helper)
  [ -x "$binary" ] && [ "$(cat "$binary.source" 2>/dev/null)" = "$hash" ] && return 0
  apt_install musl-gcc musl-tools
  step "building $binary"
  mkdir -p dist
  musl-gcc -static -O2 -Wall -Wextra -Werror -o "$binary.tmp" lib/helper/*.c
  strip "$binary.tmp"
  mv "$binary.tmp" "$binary"
  echo "$hash" >"$binary.source"
}

# The pages' scripts (functions/*/page.ts and CodeMirror), bundled for the browser.
pages() {
  local hash
  hash=$( (folder_hash functions; sha256sum lib/page-client.ts package-lock.json) | sha256sum | cut -c1-16)
  [ -f dist/pages/playground.js ] && [ "$(cat dist/pages/.source 2>/dev/null)" = "$hash" ] && return 0
  step "bundling the pages"
  node_modules/.bin/esbuild --bundle --minify --format=esm --log-level=warning --outdir=dist/pages \
    playground=functions/playground/page.ts dashboard=functions/dashboard/page.ts
  echo "$hash" >dist/pages/.source
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
image_label() { docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }

# A hash of a folder's files (names and contents), so an image is rebuilt only when its folder changed.
folder_hash() {
  (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16
}

rootfs_image() { # suite: a Debian root file system as an image, $ROOTFS_PREFIX:<suite>
  local suite=$1 image=$ROOTFS_PREFIX:$1
  image_exists "$image" && return 0
  # Where a registry answers, Debian's own slim image is the root; otherwise debootstrap builds one.
  if timeout 30 docker pull -q "debian:$suite-slim" >/dev/null 2>&1; then
    docker tag "debian:$suite-slim" "$image"
    return 0
  fi
  step "building $image with debootstrap from $MIRROR (no registry answers)"
  apt_install debootstrap debootstrap
  local dir
  dir=$(mktemp -d /var/tmp/runner-rootfs.XXXXXX)
  with_progress "/tmp/debootstrap-$suite.log" as_root debootstrap --variant=minbase "$suite" "$dir" "$MIRROR"
  as_root rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  as_root tar -C "$dir" -c . | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' - "$image" >/dev/null
  as_root rm -rf "$dir"
}

# The runner's own image: the built runner, its production packages, the helper and the
# start points, on trixie (Node.js 20.19). Rebuilt when any of them changed.
runner_image() {
  local sha hash stage
  sha=$(git rev-parse HEAD)
  hash=$( (echo "$sha"; docker image inspect --format '{{.Id}}' "$ROOTFS_PREFIX:trixie"
    for dir in lib functions deploy/start-points deploy/runner; do folder_hash "$dir"; done
    sha256sum package-lock.json) | sha256sum | cut -c1-16)
  [ "$(image_label cyber-dojo-runner/runner:latest cyber-dojo-runner.source_hash)" = "$hash" ] && return 0
  step "staging the runner image's files"
  npm run --silent build
  stage=$(mktemp -d /var/tmp/runner-image.XXXXXX)
  mkdir -p "$stage/app/deploy"
  cp -r dist package.json package-lock.json "$stage/app/"
  cp -r deploy/start-points "$stage/app/deploy/"
  (cd "$stage/app" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)
  docker_build cyber-dojo-runner/runner:latest "$stage" "$hash" -f "$root/deploy/runner/Dockerfile" \
    --build-arg "TRIXIE_IMAGE=$ROOTFS_PREFIX:trixie" --build-arg "RUNNER_SHA=$sha"
  docker tag cyber-dojo-runner/runner:latest "cyber-dojo-runner/runner:$sha"
  rm -rf "$stage"
}

# Prometheus's own parser of its text format reads /metrics in the tests; an image with
# cyber-dojo's conventions serves the cyber-dojo API's.
test_tools() {
  /usr/bin/python3 -c 'import prometheus_client' 2>/dev/null || apt_packages python3-prometheus-client
  apt_install chromium chromium
  local language
  for language in python:python-pytest c:c-assert; do
    build_image "cyber-dojo-runner/test-cyber-dojo-${language%%:*}" test/images/cyber-dojo "$IMAGE_PREFIX${language#*:}" \
      --build-arg "START_POINT=$IMAGE_PREFIX${language#*:}" --build-arg "LANGUAGE=${language%%:*}"
  done
}

deployment_images() {
  apt_install docker-compose docker-compose
  rootfs_image trixie
  runner_image
  build_image cyber-dojo-runner/nginx:latest deploy/nginx "$BASE_IMAGE" --build-arg "BASE_IMAGE=$BASE_IMAGE"
  build_image cyber-dojo-runner/engine-proxy:latest deploy/engine-proxy "$BASE_IMAGE" --build-arg "BASE_IMAGE=$BASE_IMAGE"
}

# Builds image $1 from folder $2 unless an image with the same source hash (the
# folder's, and the id of the image it builds on) is already there.
build_image() {
  local image=$1 dir=$2 from=$3; shift 3
  local hash
  hash=$( (folder_hash "$dir"; docker image inspect --format '{{.Id}}' "$from") | sha256sum | cut -c1-16)
  [ "$(image_label "$image" cyber-dojo-runner.source_hash)" = "$hash" ] && return 0
  docker_build "$image" "$dir" "$hash" "$@"
}

docker_build() { # image folder source-hash build-options...
  local image=$1 dir=$2 hash=$3 started=$SECONDS; shift 3
  step "building $image"
  with_progress "/tmp/build-${image//\//-}.log" env DOCKER_BUILDKIT=0 docker build \
    --label "cyber-dojo-runner.source_hash=$hash" "$@" -t "$image" "$dir"
  note "built in $((SECONDS - started))s, $(docker image inspect --format '{{.Size}}' "$image" | awk '{printf "%d MB", $1/1e6}')"
}

start_point_images() {
  local dir name
  for dir in deploy/start-points/*/; do
    [ -f "$dir/Dockerfile" ] || continue
    name=$(basename "$dir")
    build_image "$IMAGE_PREFIX$name" "$dir" "$BASE_IMAGE" \
      --build-arg "BASE_IMAGE=$BASE_IMAGE" \
      --label "cyber-dojo.colour_rules=$(cat "$dir/colour-rules.json")"
  done
}

# A rebuild leaves the image it replaces untagged, and every commit deployed leaves its
# runner:<sha>: keep the newest two of those (one to roll back to) and no untagged image
# of ours. An image a container still uses stays.
prune_images() {
  docker image ls --format '{{.Tag}}' cyber-dojo-runner/runner | { grep -E '^[0-9a-f]{40}$' || true; } | tail -n +3 |
    while read -r tag; do docker rmi "cyber-dojo-runner/runner:$tag" >/dev/null 2>&1 || true; done
  docker image prune --force --filter label=cyber-dojo-runner.source_hash >/dev/null
}

main() {
  local started=$SECONDS
  npm_packages
  kata_helper
  pages
  docker_engine
  rootfs_image bookworm
  build_image "$BASE_IMAGE" deploy/base "$ROOTFS_IMAGE" --build-arg "ROOTFS_IMAGE=$ROOTFS_IMAGE"
  start_point_images
  build_image cyber-dojo-runner/rag-ruby deploy/rag-ruby "$BASE_IMAGE" --build-arg "BASE_IMAGE=$BASE_IMAGE"
  for part in "$@"; do
    case $part in
      deployment) deployment_images ;;
      test) test_tools ;;
      *) printf 'setup: unknown part %s (deployment, test)\n' "$part" >&2; return 2 ;;
    esac
  done
  prune_images
  note "set-up ready in $((SECONDS - started))s"
}

main "$@"
