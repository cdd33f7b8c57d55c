#!/usr/bin/env bash
# Runs the whole test suite. First installs, from Debian, the real programs
# the tests drive (Apache httpd with mod_dav as the upstream; litmus, rclone,
# cadaver, owncloudcmd, nextcloudcmd, davfs2, curl as clients; openssl for
# the test certificates; headless Chromium for the web console) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
have apache2 || need+=(apache2)
have litmus || need+=(litmus)
have rclone || need+=(rclone)
have cadaver || need+=(cadaver)
have owncloudcmd || need+=(owncloud-client-cmd)
have nextcloudcmd || need+=(nextcloud-desktop-cmd)
have mount.davfs || need+=(davfs2)
have curl || need+=(curl)
have openssl || need+=(openssl)
have chromium || need+=(chromium)

if [ "${#need[@]}" -gt 0 ]; then
  echo "== installing test dependencies: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

echo "== cargo test"
cargo test --locked "$@"
