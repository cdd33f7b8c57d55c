#!/bin/sh
# Small files at network latency: a real Apache mod_dav behind a proxy that
# adds LATENCY_MS each way (default 5, a 10 ms round trip), written to
# directly and through the gateway (release build, webdav backend), one
# file after the other and 8 at a time. Prints one figure per line: files
# per second on both sides and their ratio against the target, the
# gateway's upstream requests per file, and the objects it left upstream.
#
#   benches/small_files.sh                        # 5000 x 4 KiB files, 5 ms
#   LATENCY_MS=20 SMALL_FILES=2000 benches/small_files.sh
#
# Needs apache2 with mod_dav (./scripts/test.sh installs it). Other builds
# or jobs on the machine make the figures noisy: check `uptime` first.
set -eu
cd "$(dirname "$0")/.."
export E2E_ONLY=small
export E2E_LATENCY_MS="${LATENCY_MS:-5}"
export E2E_SMALL_FILES="${SMALL_FILES:-5000}"
export E2E_SMALL_RUNS="${SMALL_RUNS:-1}"
exec cargo bench --bench e2e "$@"
