#!/usr/bin/env bash
# Prepares (once, then reuses) a layer over the Debian 13 root with MariaDB for the benchmark
# that compares the P-CSCF's location write-through on Valkey and on MariaDB
# (benchmarks/live/bench_databases.py): Debian's mariadb-server and Kamailio's db_mysql
# (kamailio-mysql-modules, the same 6.0.1 build as the root's Kamailio).
#
# A layer, not a change to the root's package list: the root is shared by every tier, and a
# package-list change rebuilds it (rm -rf, ~70 s) under whoever is using it. The layer is the
# upper directory of an overlay on the root, written once here; the benchmark mounts root and
# layer read-only in a private mount namespace (tests/debian_root.py does the rest). The
# layer is rebuilt when the root under it changes (its $ROOT.versions stamp); it lives beside
# the root, as $ROOT-mariadb.
#
# usage: scripts/debian13-mariadb-layer.sh   (prints the layer's path on the last line)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${IMS_CORE_TOOLS:-$HOME/.cache/ims-core-tools}
ROOT=$(bash "$here/debian13-root.sh" --path)
# The root is made by scripts/debian13-root.sh (the test command runs it first); not from
# here, so that a layer build never rebuilds the root under the tiers using it.
if [ ! -x "$ROOT/usr/sbin/kamailio" ] || [ ! -f "$ROOT.versions" ]; then
  echo "[debian13-mariadb] no Debian 13 root at $ROOT: run scripts/debian13-root.sh first" >&2
  exit 1
fi
# One layer per root (the root's path names its package list).
LAYER=$ROOT-mariadb
STAMP=$LAYER.stamp
PACKAGES=(mariadb-server kamailio-mysql-modules)
want="$(sha256sum "$ROOT.versions" | cut -c1-16) ${PACKAGES[*]}"

log() { printf '[debian13-mariadb] %s\n' "$*"; }

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -d "$LAYER/upper" ]; then
  log "reusing $LAYER"
  echo "$LAYER"
  exit 0
fi
exec {lock}>"$LAYER.lock"
flock "$lock"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -d "$LAYER/upper" ]; then
  echo "$LAYER"
  exit 0
fi
t0=$SECONDS
rm -rf "$LAYER" "$STAMP"
mkdir -p "$LAYER/upper" "$LAYER/work" "$LAYER/merged"
log "installing ${PACKAGES[*]} over $ROOT ..."
# apt inside the overlay; the root's policy-rc.d keeps the maintainer scripts from starting
# mariadb. Host resolv.conf only for apt's download from the Debian mirror.
unshare --mount --propagation private sh -eu -c '
  root=$1 layer=$2; shift 2
  mount -t overlay overlay -o "lowerdir=$root,upperdir=$layer/upper,workdir=$layer/work" "$layer/merged"
  mount --bind /etc/resolv.conf "$layer/merged/etc/resolv.conf"
  mount -t proc proc "$layer/merged/proc"
  chroot "$layer/merged" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $* >/dev/null && apt-get clean && rm -rf /var/lib/apt/lists/*"
' sh "$ROOT" "$LAYER" "${PACKAGES[@]}"
rm -rf "$LAYER/work"
# The root's own resolv.conf stays empty: tests bind theirs.
: >"$LAYER/upper/etc/resolv.conf" 2>/dev/null || true
echo "$want" >"$STAMP"
printf '%s\t%s\t%ss\t%s\n' debian13-mariadb "${PACKAGES[*]}" "$((SECONDS - t0))" "$(date -u +%FT%TZ)" >>"$CACHE/build-times.txt"
log "made $LAYER in $((SECONDS - t0))s"
echo "$LAYER"
