#!/usr/bin/env bash
# Builds the container images from this checkout's own binaries; nothing is pulled (no registry
# is reachable here). Each image starts FROM scratch and holds only our binaries, the shared
# libraries they link (found with ldd), a passwd entry for the non-root user and /data.
#
#   hypercache:<tag>          /hypercache, /hcctl
#   orbstrike:<tag>           /orbstrike-orchestrator, /orbstrike-gameserver, /orbstrike-bot
#   hypercache-jepsen:<tag>   hypercache:<tag> plus /hc-workload (the chaos tests' client)
#
# Usage: k8s/images/build.sh [--profile release|dev] [--bin-dir DIR] [--tag TAG]
#                             [--only hypercache|orbstrike|jepsen]
# Defaults: --profile release --tag dev, all images. --bin-dir takes already built binaries from
# DIR instead of running cargo (the container tests pass target/debug, which `cargo test` has
# just built). Prints each image's size.
set -euo pipefail
cd "$(dirname "$0")/../.."

profile=release
bindir=
tag=dev
only=all
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=${2:?--profile needs a value}; shift 2 ;;
    --bin-dir) bindir=${2:?--bin-dir needs a value}; shift 2 ;;
    --tag) tag=${2:?--tag needs a value}; shift 2 ;;
    --only) only=${2:?--only needs a value}; shift 2 ;;
    *) echo "error: unknown argument $1 (see the header of $0)" >&2; exit 64 ;;
  esac
done
case "$profile" in
  release) outdir=target/release ;;
  dev) outdir=target/debug ;;
  *) echo "error: --profile must be release or dev, got $profile" >&2; exit 64 ;;
esac
case "$only" in all|hypercache|orbstrike|jepsen) ;; *) echo "error: --only must be hypercache, orbstrike or jepsen" >&2; exit 64 ;; esac
command -v docker >/dev/null || { echo "error: docker is not installed" >&2; exit 1; }

bins=()
want() { [ "$only" = all ] || [ "$only" = "$1" ]; }
want hypercache && bins+=(--bin hypercache --bin hcctl)
want orbstrike && bins+=(--bin orbstrike-orchestrator --bin orbstrike-gameserver --bin orbstrike-bot)
want jepsen && bins+=(--bin hypercache --bin hcctl --bin hc-workload)
if [ -n "$bindir" ]; then
  outdir=$bindir
  for b in "${bins[@]}"; do
    [ "$b" = --bin ] && continue
    [ -x "$outdir/$b" ] || { echo "error: $outdir/$b is missing; build it first (cargo build --bins)" >&2; exit 1; }
  done
else
  cargo build --profile "$profile" "${bins[@]}"
fi

work=$(mktemp -d /tmp/hc-images.XXXXXX)
trap 'rm -rf "$work"' EXIT

# stage NAME BIN...: a root filesystem under $work/NAME with the binaries at / and their libraries
# at the paths the dynamic loader expects.
stage() {
  local name=$1; shift
  local root="$work/$name/rootfs"
  mkdir -p "$root/etc" "$work/$name/owned/data" "$work/$name/owned/tmp"
  chmod 0755 "$work/$name/owned/data"
  chmod 1777 "$work/$name/owned/tmp"
  for bin in "$@"; do
    cp "$outdir/$bin" "$root/$bin"
    # Debug builds carry debug info; the image does not need it.
    strip --strip-debug "$root/$bin" 2>/dev/null || true
    ldd "$outdir/$bin" | awk '/=> \//{print $3} /^[ \t]*\/[^ ]+ \(/{print $1}' | while read -r lib; do
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  done
  echo "nonroot:x:65532:65532:nonroot:/data:/sbin/nologin" > "$root/etc/passwd"
  echo "nonroot:x:65532:" > "$root/etc/group"
  # glibc resolves names through NSS; Docker and Kubernetes mount /etc/hosts and /etc/resolv.conf.
  echo "hosts: files dns" > "$root/etc/nsswitch.conf"
}

image() {
  local name=$1 entry=$2
  cat > "$work/$name/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
# /data and /tmp belong to the non-root user the images run as (a new volume mounted at /data
# takes this ownership).
COPY --chown=65532:65532 owned/ /
USER 65532:65532
VOLUME ["/data"]
ENTRYPOINT ["$entry"]
DOCKERFILE
  # The image this tag named before becomes dangling; remove it so repeated builds (every test
  # run) do not pile up (kept if a container still uses it).
  local old
  old=$(docker image inspect --format '{{.Id}}' "$name:$tag" 2>/dev/null || true)
  docker build -q -t "$name:$tag" "$work/$name" >/dev/null 2>"$work/$name/build.err" || { cat "$work/$name/build.err" >&2; exit 1; }
  local bytes new
  new=$(docker image inspect --format '{{.Id}}' "$name:$tag")
  if [ -n "$old" ] && [ "$old" != "$new" ]; then docker rmi "$old" >/dev/null 2>&1 || true; fi
  bytes=$(docker image inspect --format '{{.Size}}' "$name:$tag")
  echo "$name:$tag $(( bytes / 1024 / 1024 )) MiB ($bytes bytes, binaries from $outdir)"
}

if want hypercache; then stage hypercache hypercache hcctl; image hypercache /hypercache; fi
if want orbstrike; then
  stage orbstrike orbstrike-orchestrator orbstrike-gameserver orbstrike-bot
  image orbstrike /orbstrike-orchestrator
fi
if want jepsen; then stage hypercache-jepsen hypercache hcctl hc-workload; image hypercache-jepsen /hypercache; fi
