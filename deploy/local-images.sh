#!/usr/bin/env bash
# Builds, with no container registry, a local stand-in for every public
# image deploy/docker-compose.yml names, under a name of its own (never the
# official tag, which would shadow the public image for every other project
# on this Docker engine); deploy/e2e.sh points the compose file at them with
# the PAYONCE_*_IMAGE variables (standin_env below prints them):
#
#   payonce-standin/debian:bookworm-slim   mmdebstrap (the machine's own apt sources) + docker import
#   payonce-standin/golang:1.26-bookworm   that base + the host's /usr/local/go   (for golang:1.26-bookworm)
#   payonce-standin/postgres:15-bookworm   mmdebstrap with Debian's postgresql-15 + an entrypoint
#                                          honouring POSTGRES_* and /docker-entrypoint-initdb.d
#   payonce-standin/nats:2.15.2            nats-server v2.15.2 from its Go module, FROM scratch
#   payonce-standin/jaeger:2.13.0          Jaeger v1.76.0 (= v2.13.0) from its Go module, FROM scratch
#   payonce-standin/prometheus:v3.16.0     Prometheus v0.316.0 (= v3.16.0) from its Go module, FROM scratch
#   payonce/<service>:local                deploy/Dockerfile, from source, built with --network none
#
# It is idempotent: a stand-in image that exists is kept, and payonce's
# images are rebuilt only when the source they are built from changed (a
# hash of it is stored as an image label). Slow artefacts (the Jaeger binary
# takes ~10 minutes cold) are cached in deploy/.build/, which git ignores.
#
# Usage: deploy/local-images.sh [--force] [debian|golang|postgres|nats|jaeger|prometheus|payonce ...]
#   no names: everything; --force rebuilds the named (or all) images.
#   deploy/local-images.sh --env prints the PAYONCE_*_IMAGE settings.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=deploy/.build
mkdir -p "$BUILD/bin"
# The stand-ins' names, and the compose variables that select them.
DEBIAN_IMAGE=payonce-standin/debian:bookworm-slim
GO_IMAGE=payonce-standin/golang:1.26-bookworm
POSTGRES_IMAGE=payonce-standin/postgres:15-bookworm
NATS_IMAGE=payonce-standin/nats:2.15.2
JAEGER_IMAGE=payonce-standin/jaeger:2.13.0
PROMETHEUS_IMAGE=payonce-standin/prometheus:v3.16.0
standin_env() {
  printf '%s\n' "PAYONCE_GO_IMAGE=$GO_IMAGE" "PAYONCE_POSTGRES_IMAGE=$POSTGRES_IMAGE" \
    "PAYONCE_NATS_IMAGE=$NATS_IMAGE" "PAYONCE_JAEGER_IMAGE=$JAEGER_IMAGE" "PAYONCE_PROMETHEUS_IMAGE=$PROMETHEUS_IMAGE"
}
FORCE=0
WANT=()
for arg in "$@"; do
  case "$arg" in
  --env) standin_env; exit 0 ;;
  --force) FORCE=1 ;;
  debian | golang | postgres | nats | jaeger | prometheus | payonce) WANT+=("$arg") ;;
  *) echo "usage: $0 [--force|--env] [debian|golang|postgres|nats|jaeger|prometheus|payonce ...]" >&2; exit 2 ;;
  esac
done
[ ${#WANT[@]} -gt 0 ] || WANT=(debian golang postgres nats jaeger prometheus payonce)
wanted() { [[ " ${WANT[*]} " == *" $1 "* ]]; }

export PATH="$PATH:/usr/local/go/bin"
# The classic builder, which docker-compose 1.29 also uses; the engine here
# has no buildx.
export DOCKER_BUILDKIT=0
SECONDS=0
log() { printf '[local-images %4ds] %s\n' "$SECONDS" "$*"; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
# docker_build ARGS...: docker build, quiet when it works, its whole output
# when it fails.
docker_build() {
  local out
  if ! out="$(docker build -q "$@" 2>&1)"; then
    printf '%s\n' "$out" >&2
    return 1
  fi
}
# keep IMAGE: true when IMAGE exists and no rebuild was asked for.
keep() {
  if have_image "$1" && [ "$FORCE" = 0 ]; then
    log "kept    $1 (exists; --force rebuilds)"
    return 0
  fi
  return 1
}

# apt_lists: a fresh machine may have no package lists yet.
apt_lists() {
  compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null && return
  log "apt-get update (no package lists yet)"
  apt-get update -q >/dev/null
}

need_mmdebstrap() {
  command -v mmdebstrap >/dev/null 2>&1 && return
  apt_lists
  log "installing mmdebstrap with apt"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap >/dev/null
}

# Shared mmdebstrap options: the smallest Debian, without docs, man pages
# and translations. Given no mirror, mmdebstrap uses the host's apt sources.
MMDEBSTRAP_OPTS=(--variant=minbase --quiet
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*')

build_debian() {
  keep "$DEBIAN_IMAGE" && return
  need_mmdebstrap
  log "building $DEBIAN_IMAGE (mmdebstrap)"
  mmdebstrap "${MMDEBSTRAP_OPTS[@]}" --include=ca-certificates bookworm "$BUILD/debian.tar"
  docker import --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$BUILD/debian.tar" "$DEBIAN_IMAGE" >/dev/null
  rm -f "$BUILD/debian.tar"
  log "built   $DEBIAN_IMAGE"
}

build_golang() {
  keep "$GO_IMAGE" && return
  local goroot
  goroot="$(go env GOROOT)"
  log "building $GO_IMAGE (with $(go version | cut -d' ' -f3) from $goroot)"
  tar -c -C deploy/standins/golang Dockerfile -C "$(dirname "$goroot")" "$(basename "$goroot")" |
    docker_build --build-arg "BASE=$DEBIAN_IMAGE" -t "$GO_IMAGE" -
  log "built   $GO_IMAGE"
}

build_postgres() {
  if ! { have_image payonce-standin/postgres-rootfs:15-bookworm && [ "$FORCE" = 0 ]; }; then
    need_mmdebstrap
    log "building the PostgreSQL 15 rootfs (mmdebstrap, Debian's postgresql-15)"
    # postgresql-common would create a cluster at install time; the
    # entrypoint makes its own in PGDATA instead.
    mmdebstrap "${MMDEBSTRAP_OPTS[@]}" --include=postgresql-15 \
      --essential-hook='mkdir -p "$1/etc/postgresql-common/createcluster.d" && echo "create_main_cluster = false" >"$1/etc/postgresql-common/createcluster.d/payonce.conf"' \
      bookworm "$BUILD/postgres.tar"
    docker import "$BUILD/postgres.tar" payonce-standin/postgres-rootfs:15-bookworm >/dev/null
    rm -f "$BUILD/postgres.tar"
  fi
  keep "$POSTGRES_IMAGE" && return
  docker_build -t "$POSTGRES_IMAGE" deploy/standins/postgres
  log "built   $POSTGRES_IMAGE"
}

# busybox: Debian's static busybox, the wget that the nats and jaeger
# healthchecks call. Fetched with apt, cached.
busybox() {
  [ -x "$BUILD/bin/busybox" ] && return
  apt_lists
  log "fetching Debian's busybox-static with apt"
  local tmp
  tmp="$(mktemp -d)"
  chmod 755 "$tmp" # apt's download user must be able to write there
  (cd "$tmp" && apt-get download -q busybox-static >/dev/null && dpkg-deb -x busybox-static_*.deb root)
  cp "$tmp/root/bin/busybox" "$BUILD/bin/busybox"
  rm -rf "$tmp"
}

# go_tool NAME PACKAGE: builds a binary of a tools module (deploy/tools/NAME)
# into deploy/.build/bin once; later runs reuse it.
go_tool() {
  local name="$1" pkg="$2"
  if [ -x "$BUILD/bin/$name" ] && [ "$FORCE" = 0 ]; then return; fi
  log "building $name from its Go module (deploy/tools/$name)"
  (cd "deploy/tools/$name" && CGO_ENABLED=0 go build -tags "${PAYONCE_GO_TAGS:-}" -trimpath -ldflags='-s -w' -o "../../.build/bin/$name.tmp" "$pkg")
  mv "$BUILD/bin/$name.tmp" "$BUILD/bin/$name"
}

# image_context NAME FILE...: a build context dir holding FILEs.
image_context() {
  local dir="$BUILD/ctx/$1"
  shift
  rm -rf "$dir" && mkdir -p "$dir"
  cp "$@" "$dir/"
  echo "$dir"
}

build_nats() {
  keep "$NATS_IMAGE" && return
  busybox
  go_tool nats-server github.com/nats-io/nats-server/v2
  local ctx
  ctx="$(image_context nats "$BUILD/bin/nats-server" "$BUILD/bin/busybox")"
  docker_build -t "$NATS_IMAGE" -f deploy/standins/nats/Dockerfile "$ctx"
  log "built   $NATS_IMAGE"
}

build_jaeger() {
  keep "$JAEGER_IMAGE" && return
  busybox
  if [ -n "$jaeger_pid" ]; then
    log "waiting for the Jaeger binary (log: $BUILD/jaeger-build.log)"
    wait "$jaeger_pid" || { cat "$BUILD/jaeger-build.log" >&2; exit 1; }
    jaeger_pid=
  else
    go_tool jaeger github.com/jaegertracing/jaeger/cmd/jaeger
  fi
  local ctx jaeger_src
  jaeger_src="$(cd deploy/tools/jaeger && go list -m -f '{{.Dir}}' github.com/jaegertracing/jaeger)"
  ctx="$(image_context jaeger "$BUILD/bin/jaeger" "$BUILD/bin/busybox" "$jaeger_src/cmd/jaeger/sampling-strategies.json")"
  chmod 644 "$ctx/sampling-strategies.json"
  mkdir -m 1777 "$ctx/tmp"
  docker_build -t "$JAEGER_IMAGE" -f deploy/standins/jaeger/Dockerfile "$ctx"
  log "built   $JAEGER_IMAGE"
}

# Prometheus from its Go module (deploy/tools/prometheus), with the
# remove_all_sd build tag: only static and file service discovery, which is
# all the compose stack uses, and a third of the build. No UI assets (they
# are built with npm elsewhere): the HTTP API is complete.
build_prometheus() {
  keep "$PROMETHEUS_IMAGE" && return
  busybox
  PAYONCE_GO_TAGS=remove_all_sd,netgo go_tool prometheus github.com/prometheus/prometheus/cmd/prometheus
  local ctx
  ctx="$(image_context prometheus "$BUILD/bin/prometheus" "$BUILD/bin/busybox")"
  mkdir -m 1777 "$ctx/prometheus-data"
  docker_build -t "$PROMETHEUS_IMAGE" -f deploy/standins/prometheus/Dockerfile "$ctx"
  log "built   $PROMETHEUS_IMAGE"
}

# payonce's images are built by deploy/Dockerfile itself, the file compose
# uses, from a copy of the work tree (tracked and untracked, not ignored)
# plus vendor/, so the build needs no network: it runs with --network none.
build_payonce() {
  local ctx="$BUILD/ctx/payonce" targets=(migrate nats-exporter) d hash
  for d in services/*/cmd/*; do
    [ -f "$d/main.go" ] && targets+=("$(basename "$d")")
  done
  rm -rf "$ctx" && mkdir -p "$ctx"
  git ls-files -z --cached --others --exclude-standard -- ':!deploy' ':!bench' |
    while IFS= read -r -d '' f; do if [ -f "$f" ]; then printf '%s\0' "$f"; fi; done |
    tar -c --null -T - | tar -x -C "$ctx"
  go mod vendor -o "$ctx/vendor"
  hash="$(cd "$ctx" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
  local t stale=()
  # The source hash is kept as a second tag (payonce/<t>:src-<hash>).
  for t in "${targets[@]}"; do
    if [ "$FORCE" = 0 ] && have_image "payonce/$t:src-$hash" && have_image "payonce/$t:local"; then
      log "kept    payonce/$t:local (source unchanged: $hash)"
    else
      stale+=("$t")
    fi
  done
  if [ ${#stale[@]} -gt 0 ]; then
    # The classic builder does not reuse the build stage from one --target
    # build to the next (each re-ran the whole compile, about 75 s here), so
    # the build stage of deploy/Dockerfile is built once, and each service
    # stage, taken unchanged from deploy/Dockerfile, copies from it.
    log "building the build stage (deploy/Dockerfile, target build, source $hash)"
    docker_build --network none --build-arg "GO_IMAGE=$GO_IMAGE" --target build -t "payonce/build:local" -f deploy/Dockerfile "$ctx"
    local stages="$BUILD/Dockerfile.stages" empty="$BUILD/empty-context"
    { echo "FROM payonce/build:local AS build"; sed -n '/^FROM scratch AS base/,$p' deploy/Dockerfile; } >"$stages"
    mkdir -p "$empty"
  fi
  for t in "${stale[@]}"; do
    log "building payonce/$t:local (stage $t of deploy/Dockerfile)"
    docker_build --network none --target "$t" \
      -t "payonce/$t:local" -t "payonce/$t:src-$hash" -f "$stages" "$empty"
    # Forget the tags of older sources, so they do not pile up.
    docker images --format '{{.Repository}}:{{.Tag}}' "payonce/$t" | grep ':src-' | grep -v ":src-$hash\$" |
      xargs -r docker rmi >/dev/null 2>&1 || true
  done
  [ ${#stale[@]} -eq 0 ] || log "built   ${stale[*]/#/payonce/}"
  rm -rf "$ctx"
}

command -v docker >/dev/null 2>&1 || { echo "local-images: docker is not installed" >&2; exit 1; }
# The Jaeger binary is the long pole (about 10 minutes cold, all CPU) while
# the Debian steps mostly wait on downloads, so it starts first, beside them.
jaeger_pid=
if wanted jaeger && { ! have_image "$JAEGER_IMAGE" || [ "$FORCE" = 1 ]; } &&
  { [ ! -x "$BUILD/bin/jaeger" ] || [ "$FORCE" = 1 ]; }; then
  log "building the Jaeger binary in the background (about 10 minutes cold)"
  go_tool jaeger github.com/jaegertracing/jaeger/cmd/jaeger >"$BUILD/jaeger-build.log" 2>&1 &
  jaeger_pid=$!
  trap '[ -z "$jaeger_pid" ] || kill "$jaeger_pid" 2>/dev/null || true' EXIT
fi
for step in debian golang postgres nats jaeger prometheus payonce; do
  wanted "$step" && "build_$step"
done
log "done"
