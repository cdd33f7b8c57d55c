#!/bin/sh
# End-to-end benchmark: a real Apache mod_dav upstream used directly, and the
# gateway (release build, webdav backend) in front of the same Apache.
# Prints one figure per line with the issue's target next to it; lines
# starting with '#' tell where the CPU time went during each measurement.
#
#   benches/e2e.sh                          # 1 GiB files, 2000 x 4 KiB files
#   E2E_SIZE_MIB=256 E2E_SMALL_FILES=500 benches/e2e.sh
#
# Needs apache2 with mod_dav (see README: ./scripts/test.sh installs it) and
# about 5 x E2E_SIZE_MIB of free space in the temp directory. Other builds
# or jobs on the machine make the figures noisy: check `uptime` first.
set -eu
cd "$(dirname "$0")/.."
export E2E_SIZE_MIB="${E2E_SIZE_MIB:-1024}"
export E2E_SMALL_FILES="${E2E_SMALL_FILES:-2000}"
exec cargo bench --bench e2e "$@"
