#!/usr/bin/env bash
# The steps of deploy/Dockerfile as plain commands. The Dockerfile's RUN lines
# are exactly these, so an image build can be reproduced (and checked) on a
# machine without a container engine, from the repository root:
#
#   deploy/image-steps.sh preflight       # rustup, gcc, git, cargo present
#   cargo xtask build --release           # -> target/release/minerwatch
#   deploy/image-steps.sh stage DIR       # the runtime image's files, under DIR
#
# `stage` takes the binary from $MINERWATCH_BIN if set (default
# target/release/minerwatch) and refuses one that needs a shared library the
# runtime image (debian-slim) does not have.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Shared libraries every debian-slim image has (libc6, libgcc-s1).
slim_libs='^(libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1)$'

die() {
    echo "image-steps: $*" >&2
    exit 1
}

preflight() {
    local missing=()
    for tool in rustup cargo gcc git; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    [ ${#missing[@]} -eq 0 ] ||
        die "missing ${missing[*]}: cargo xtask build needs rustup (it installs the pinned eBPF toolchain), gcc and git"
    echo "image-steps: preflight ok ($(cargo --version))"
}

stage() {
    local dest=${1:?usage: image-steps.sh stage DIR}
    local bin=${MINERWATCH_BIN:-$repo/target/release/minerwatch}
    [ -x "$bin" ] || die "no executable at $bin: run \`cargo xtask build --release\` first"
    command -v readelf >/dev/null || die "readelf (binutils) is needed to check the binary's libraries"
    local needed
    needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
    local extra
    extra=$(printf '%s\n' "$needed" | grep -Ev "$slim_libs" | grep -v '^$' || true)
    [ -z "$extra" ] || die "$bin needs libraries debian-slim lacks: $(echo $extra); add them to the runtime stage"

    install -D -m 0755 "$bin" "$dest/usr/local/bin/minerwatch"
    # The ConfigMap mounts over /etc/minerwatch; this copy serves `docker run`.
    install -D -m 0644 "$repo/deploy/minerwatch.toml" "$dest/etc/minerwatch/minerwatch.toml"
    # Mount points of the DaemonSet's hostPath volumes, root-only like the
    # daemon's defaults (tail socket, alert log, quarantine).
    install -d -m 0700 "$dest/run/minerwatch" "$dest/var/log/minerwatch" \
        "$dest/var/lib/minerwatch" "$dest/var/lib/minerwatch/quarantine"
    echo "image-steps: staged $(du -sh "$dest" | cut -f1) under $dest"
}

case "${1:-}" in
preflight) preflight ;;
stage) stage "${2:-}" ;;
*) die "usage: image-steps.sh preflight | stage DIR" ;;
esac
