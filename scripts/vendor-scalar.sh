#!/usr/bin/env bash
# Vendors the pinned API reference renderer served at /docs into
# internal/apidoc/scalar/standalone.js: the standalone browser bundle of
# @scalar/api-reference (MIT), taken byte for byte from the npm package, whose
# tarball must match the pinned integrity. The bundle is committed, so builds
# and tests never fetch it; this script is only for a deliberate upgrade:
#
#   1. set VERSION and INTEGRITY (npm view @scalar/api-reference@VERSION dist.integrity);
#   2. run scripts/vendor-scalar.sh;
#   3. set ScalarVersion and ScalarSHA256 in internal/apidoc/docs.go to what it prints,
#      check the options in initJS against the new version, and run
#      go test ./internal/apidoc and the browser test (integration_test/apidocs_test.go).
set -euo pipefail

VERSION=1.76.4
INTEGRITY=sha512-bHSVv494yuNTcBzmfZR3eYhckOTiu3L6IJmvM2kdKzBVmWqm+JhEHbYc7ydsv7FBSs3vTW9sCz00La2dFgWxVg==

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
tgz="$(npm pack --silent "@scalar/api-reference@$VERSION")"
got="$(node -e 'const c = require("crypto"), fs = require("fs");
	console.log("sha512-" + c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"))' "$tgz")"
if [[ "$got" != "$INTEGRITY" ]]; then
	echo "vendor-scalar: $tgz has integrity $got, want $INTEGRITY" >&2
	exit 1
fi
tar xzf "$tgz" package/dist/browser/standalone.js
cp package/dist/browser/standalone.js "$ROOT/internal/apidoc/scalar/standalone.js"
echo "vendor-scalar: @scalar/api-reference@$VERSION -> internal/apidoc/scalar/standalone.js"
echo "ScalarVersion = \"$VERSION\""
echo "ScalarSHA256  = \"$(sha256sum "$ROOT/internal/apidoc/scalar/standalone.js" | cut -d' ' -f1)\""
