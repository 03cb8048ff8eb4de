#!/usr/bin/env bash
# Builds the pinned Kubo release from the Go module proxy and caches the binary
# outside the repository, keyed by version. Idempotent: a cached binary that
# reports the right version is reused. Prints the binary's path on stdout.
#
# Kubo >= v0.40 has an `exclude` block in its go.mod, so `go install …@v` refuses;
# a throwaway wrapper module that requires kubo and builds its cmd/ipfs works.
set -euo pipefail

KUBO_VERSION="${KUBO_VERSION:-v0.43.0}"
# v0.43.1 replaces go-libp2p with a fork that the Go module proxy does not serve (403),
# so the newest release buildable from the proxy is v0.43.0.
CACHE_ROOT="${SIDECAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sidecar}"
DEST="$CACHE_ROOT/kubo/$KUBO_VERSION"
BIN="$DEST/ipfs"

if [ -x "$BIN" ] && "$BIN" version 2>/dev/null | grep -q "${KUBO_VERSION#v}"; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { echo "install-kubo: go is not on PATH" >&2; exit 1; }
mkdir -p "$DEST"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
echo "install-kubo: building kubo $KUBO_VERSION (module cache: $(go env GOMODCACHE))" >&2
go mod init sidecar.test/kubo-build >/dev/null 2>&1
# Replace and exclude directives only apply in the main module: copy Kubo's own
# into the wrapper so that it builds with exactly the dependencies Kubo pins.
kubo_mod="$(go mod download -json "github.com/ipfs/kubo@$KUBO_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
[ -f "$kubo_mod" ] || { echo "install-kubo: no go.mod for kubo $KUBO_VERSION" >&2; exit 1; }
go mod edit -json "$kubo_mod" | python3 -c '
import json, sys
m = json.load(sys.stdin)
def mv(x):
    return x["Path"] + ("@" + x["Version"] if x.get("Version") else "")
for r in m.get("Replace") or []:
    print("-replace=" + mv(r["Old"]) + "=" + mv(r["New"]))
for e in m.get("Exclude") or []:
    print("-exclude=" + e["Path"] + "@" + e["Version"])
' | xargs -r go mod edit
go get "github.com/ipfs/kubo/cmd/ipfs@$KUBO_VERSION" >&2
go build -trimpath -o "$BIN.tmp" github.com/ipfs/kubo/cmd/ipfs >&2
mv "$BIN.tmp" "$BIN"
"$BIN" version >&2
echo "$BIN"
