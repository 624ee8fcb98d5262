#!/usr/bin/env bash
# Installs the pinned test tools the storage/mail tests need into <repo>/.tools:
#
#   .tools/bin/minio            S3 server          (go install, AGPL: a test tool only, never linked)
#   .tools/bin/fake-gcs-server  GCS emulator       (go install)
#   .tools/bin/mailpit          SMTP server + API  (go install)
#   .tools/node/node_modules    azurite (Azure Blob emulator), @duckdb/node-api (independent
#                               CSV/JSON/Parquet reader), @redocly/cli (OpenAPI linter)
#                               (npm ci from the committed lock file)
#   clients/ts/node_modules     the TypeScript client's pinned packages (openapi-fetch,
#                               openapi-typescript, swagger2openapi, typescript, @types/node)
#                               (npm ci from clients/ts/package-lock.json)
#   web/console/node_modules    the web console's pinned packages (esbuild, typescript,
#                               playwright-core, axe-core) (npm ci from web/console/package-lock.json)
#
# Idempotent and shared between checkouts: each pinned Go binary and the pinned node_modules
# live once per machine in a cache keyed by the pin (AUDITEXPORT_TOOLS_CACHE, default
# ${XDG_CACHE_HOME:-~/.cache}/auditexport-tools: go/<name>@<version>/<name>,
# node/<hash of the package files>/), and .tools/bin/<name> and .tools/node are symlinks into
# it; so a fresh clone on a machine that ran the tests before installs nothing. A Go binary is
# built only when its pin is not in the cache, npm ci only when the package files' hash is not;
# clients/ts/node_modules is installed in place (npm ci when clients/ts/node_modules/
# .auditexport-stamp differs from the hash of clients/ts's package files). Chromium (the
# headless browser of integration_test/apidocs_test.go and console_test.go) is Debian's package, installed with
# apt-get only when /usr/bin/chromium is missing (root or sudo needed then). Entries are built
# under a temporary name and renamed into place, so concurrent runs never see half an install.
# A cold install takes a few minutes (minio dominates; the Go tools and npm install concurrently);
# a warm run takes well under a second.
# Tests find the tools through internal/testenv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
NODE_DIR="$TOOLS/node"
GO="${GO:-go}"
CACHE="${AUDITEXPORT_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/auditexport-tools}"

# --- pins -------------------------------------------------------------------------------
# name|package|version
GO_TOOLS=(
	"minio|github.com/minio/minio|v0.0.0-20260212201848-7aac2a2c5b7c"
	"fake-gcs-server|github.com/fsouza/fake-gcs-server|v1.56.1"
	"mailpit|github.com/axllent/mailpit|v1.33.1"
)
PKG_JSON="$ROOT/scripts/test-tools-package.json"      # azurite 3.37.0, @duckdb/node-api 1.5.6-r.1, @redocly/cli 2.77.0
PKG_LOCK="$ROOT/scripts/test-tools-package-lock.json" # produced by npm install; installed with npm ci

mkdir -p "$BIN" "$CACHE/go" "$CACHE/node"

# link TARGET NAME: NAME becomes a symlink to TARGET, replaced atomically (a real directory
# of an older install is removed first).
link() {
	if [[ -d "$2" && ! -L "$2" ]]; then rm -rf "$2"; fi
	ln -sfn "$1" "$2.tmp.$$"
	mv -Tf "$2.tmp.$$" "$2"
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

SUMMARY=()
T_ALL="$(now)"

# --- Go binaries --------------------------------------------------------------------------
# Built concurrently with each other and with the npm installs below: a cold install is
# mostly module downloads, npm's network waits and the long single-package compile and link
# of minio, which leave a core idle when run one after another.
GO_STATUS="$(mktemp -d)"
# On any exit (a failed npm step included) no build is left running.
trap 'jobs -pr | xargs -r kill 2>/dev/null; rm -rf "$GO_STATUS"' EXIT
GO_PIDS=()
for spec in "${GO_TOOLS[@]}"; do
	IFS='|' read -r name pkg ver <<<"$spec"
	t="$(now)"
	dir="$CACHE/go/$name@$ver"
	if [[ ! -x "$dir/$name" && -x "$BIN/$name" && ! -L "$BIN/$name" && -f "$BIN/$name.version" &&
		"$(cat "$BIN/$name.version")" == "$pkg@$ver" ]]; then
		# Adopt a binary an earlier version of this script built in place.
		mkdir -p "$dir" && cp "$BIN/$name" "$dir/$name.tmp.$$" && mv -f "$dir/$name.tmp.$$" "$dir/$name"
	fi
	if [[ -x "$dir/$name" ]]; then
		link "$dir/$name" "$BIN/$name"
		echo "$pkg@$ver" >"$BIN/$name.version"
		SUMMARY+=("$name=cached($(elapsed "$t")s)")
		continue
	fi
	echo "install-test-tools: building $pkg@$ver ..." >&2
	rm -f "$BIN/$name.version"
	(
		# CGO off: static binaries, no C toolchain needed. GOFLAGS is reset so that a
		# caller's -mod=... or -modfile=... cannot leak into a module-mode install.
		# -trimpath and -ldflags=-s -w: no local paths, no symbol table or DWARF to
		# link (these are test servers, never debugged here); the same pinned code.
		tmp="$dir.tmp.$$"
		GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-buildvcs=false "$GO" install -trimpath -ldflags='-s -w' "$pkg@$ver"
		mkdir -p "$dir" && mv -f "$tmp/$name" "$dir/$name" && rm -rf "$tmp"
		link "$dir/$name" "$BIN/$name"
		echo "$pkg@$ver" >"$BIN/$name.version"
		echo "$name=built($(elapsed "$t")s)" >"$GO_STATUS/$name"
	) &
	GO_PIDS+=("$!")
done

# --- Chromium (Debian package) --------------------------------------------------------------
# Meanwhile too: apt mostly waits on downloads. Only when it is missing, so a warm run is
# a stat; another distribution (no apt-get) gets a message and the browser test skips
# locally (it fails under CI).
CHROMIUM=/usr/bin/chromium
if [[ -x "$CHROMIUM" ]]; then
	SUMMARY+=("chromium=present")
elif ! command -v apt-get >/dev/null; then
	echo "install-test-tools: $CHROMIUM missing and no apt-get: install Chromium by hand for the /docs browser test" >&2
	SUMMARY+=("chromium=missing")
else
	SUDO=""
	if [[ "$(id -u)" != 0 ]]; then
		command -v sudo >/dev/null || { echo "install-test-tools: installing chromium needs root or sudo" >&2; exit 1; }
		SUDO="sudo"
	fi
	echo "install-test-tools: apt-get install chromium ..." >&2
	(
		t="$(now)"
		$SUDO apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
		"$CHROMIUM" --version >/dev/null 2>&1 # (Debian's wrapper script may print a shell warning)
		echo "chromium=installed($(elapsed "$t")s)" >"$GO_STATUS/chromium"
	) &
	GO_PIDS+=("$!")
fi

# --- npm packages -------------------------------------------------------------------------
t="$(now)"
want="$(cat "$PKG_JSON" "$PKG_LOCK" | sha256sum | cut -d' ' -f1)"
NODE_CACHE="$CACHE/node/$want"
if [[ ! -f "$NODE_CACHE/.stamp" && -d "$NODE_DIR/node_modules" && ! -L "$NODE_DIR" && -f "$NODE_DIR/.stamp" &&
	"$(cat "$NODE_DIR/.stamp")" == "$want" ]]; then
	# Adopt the node_modules an earlier version of this script installed in place.
	rm -rf "$NODE_CACHE.tmp.$$" && cp -a "$NODE_DIR" "$NODE_CACHE.tmp.$$" &&
		{ mv -T "$NODE_CACHE.tmp.$$" "$NODE_CACHE" 2>/dev/null || rm -rf "$NODE_CACHE.tmp.$$"; }
fi
if [[ -f "$NODE_CACHE/.stamp" && -d "$NODE_CACHE/node_modules" ]]; then
	link "$NODE_CACHE" "$NODE_DIR"
	SUMMARY+=("npm=cached($(elapsed "$t")s)")
else
	command -v npm >/dev/null || { echo "install-test-tools: npm not found (Node 20+ is required)" >&2; exit 1; }
	echo "install-test-tools: npm ci (azurite, @duckdb/node-api, @redocly/cli) ..." >&2
	tmp="$NODE_CACHE.tmp.$$"
	rm -rf "$tmp" && mkdir -p "$tmp"
	cp "$PKG_JSON" "$tmp/package.json"
	cp "$PKG_LOCK" "$tmp/package-lock.json"
	# --ignore-scripts: nothing here needs an install script (DuckDB ships its prebuilt
	# binding as the optional package @duckdb/node-bindings-<os>-<arch>), and no script
	# may try to download anything.
	(cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)

	# Smoke checks: the DuckDB binding loads, Redocly CLI runs, Azurite answers.
	# (its output only on failure: it prints a banner about Node 20's end of life)
	if ! out="$(cd "$tmp" && REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
		node node_modules/@redocly/cli/bin/cli.js --version 2>&1)"; then
		echo "install-test-tools: redocly --version failed:" >&2
		echo "$out" >&2
		exit 1
	fi
	(cd "$tmp" && node --input-type=module -e '
		import { DuckDBInstance } from "@duckdb/node-api";
		const c = await (await DuckDBInstance.create(":memory:")).connect();
		const r = await c.runAndReadAll("select 42 as x");
		if (Number(r.getRowObjects()[0].x) !== 42) throw new Error("duckdb smoke check failed");
	')
	port="$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')"
	loc="$(mktemp -d)"
	"$tmp/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$port" --location "$loc" \
		--silent --skipApiVersionCheck --loose >"$loc/azurite.log" 2>&1 &
	apid=$!
	ok=""
	for _ in $(seq 1 300); do
		# Any HTTP answer (even 4xx without auth) means Azurite is serving.
		if code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/devstoreaccount1?comp=list" 2>/dev/null)" && [[ "$code" != "000" ]]; then
			ok=1
			break
		fi
		sleep 0.1
	done
	# SIGKILL: Azurite's SIGTERM shutdown takes ~100 s here, and this data is throwaway.
	kill -KILL "$apid" 2>/dev/null || true
	wait "$apid" 2>/dev/null || true
	if [[ -z "$ok" ]]; then
		echo "install-test-tools: azurite-blob did not start:" >&2
		cat "$loc/azurite.log" >&2
		rm -rf "$loc" "$tmp"
		exit 1
	fi
	rm -rf "$loc"
	echo "$want" >"$tmp/.stamp"
	# Another run may have finished the same install meanwhile: keep theirs.
	mv -T "$tmp" "$NODE_CACHE" 2>/dev/null || rm -rf "$tmp"
	link "$NODE_CACHE" "$NODE_DIR"
	SUMMARY+=("npm=installed($(elapsed "$t")s)")
fi

# --- packages installed in place: clients/ts and web/console -------------------------------
# Their builds and tests resolve packages from their own node_modules. Same rules as above:
# exact pins, committed lock, no install scripts. npm ci runs only when
# <dir>/node_modules/.auditexport-stamp differs from the hash of the package files.
# npm_in_place LABEL DIR SMOKE: installs DIR's packages, then runs the smoke check SMOKE in DIR.
npm_in_place() {
	local label="$1" dir="$2" smoke="$3" t stamp want
	t="$(now)"
	stamp="$dir/node_modules/.auditexport-stamp"
	want="$(cat "$dir/package.json" "$dir/package-lock.json" | sha256sum | cut -d' ' -f1)"
	if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
		SUMMARY+=("$label=cached($(elapsed "$t")s)")
		return
	fi
	command -v npm >/dev/null || { echo "install-test-tools: npm not found (Node 20+ is required)" >&2; exit 1; }
	echo "install-test-tools: npm ci (${dir#"$ROOT"/}) ..." >&2
	(cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
	(cd "$dir" && bash -c "$smoke" >/dev/null)
	echo "$want" >"$stamp"
	SUMMARY+=("$label=installed($(elapsed "$t")s)")
}
# The TypeScript client (integration_test/tsclient_test.go); smoke check: the compiler runs.
npm_in_place npm-ts-client "$ROOT/clients/ts" 'node node_modules/typescript/bin/tsc --version'
# The web console (integration_test/console_test.go): esbuild finds its binary in the optional
# package @esbuild/<os>-<arch>, so it needs no install script; its browser test drives Debian's
# chromium with playwright-core and checks pages with axe-core. Smoke check: esbuild runs.
npm_in_place npm-console "$ROOT/web/console" \
	'node -e "import(\"esbuild\").then((e) => e.transform(\"let a: number = 1\", { loader: \"ts\" }))"'

# --- wait for the Go binaries (and chromium) ------------------------------------------------
failed=""
for pid in "${GO_PIDS[@]}"; do
	wait "$pid" || failed=1
done
for f in "$GO_STATUS"/*; do
	[[ -f "$f" ]] && SUMMARY+=("$(cat "$f")")
done
if [[ -n "$failed" ]]; then
	echo "install-test-tools: building a Go tool or installing chromium failed (see above)" >&2
	exit 1
fi

echo "install-test-tools: ${SUMMARY[*]} total=$(elapsed "$T_ALL")s -> $TOOLS (cache $CACHE)"
