#!/usr/bin/env bash
# Make sure the Debian tools tapnf's demo and tests drive are present.
# As root: installs what is missing with apt-get. Otherwise: says what to install and fails.
set -euo pipefail
declare -A pkg_of=(
  [ip]=iproute2 [tc]=iproute2 [openssl]=openssl [ping]=iputils-ping [arping]=arping
  [curl]=curl [gnutls-cli]=gnutls-bin [tshark]=tshark
)
missing=()
for cmd in "${!pkg_of[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_of[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
  echo "tapnf needs these Debian packages: ${pkgs[*]}" >&2
  echo "install them with: sudo apt-get install -y ${pkgs[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${pkgs[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
