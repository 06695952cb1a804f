#!/usr/bin/env bash
# Installs the Debian 12 packages Quarry builds with (only those missing; apt-get update only when needed).
set -euo pipefail
PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libabsl-dev libgloo-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libpcre2-dev python3-jinja2
  libgtest-dev libgmock-dev googletest
  clang libclang-rt-14-dev libomp-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler prometheus-cpp-dev
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
