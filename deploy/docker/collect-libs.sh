#!/bin/sh
# collect-libs.sh DEST BINARY...: copies the shared libraries the binaries load (ldd) into DEST, except the ones
# every runtime base image has (glibc, libstdc++, libgcc) and the CUDA / NVIDIA libraries (the CUDA runtime image
# and the NVIDIA container toolkit provide them). Fails when ldd reports a library as not found (libcuda.so.1,
# the driver, is only present on GPU nodes and is skipped).
set -eu
dest="$1"
shift
mkdir -p "$dest"
missing="$(for bin in "$@"; do ldd "$bin"; done | grep "not found" | grep -v "libcuda.so" || true)"
if [ -n "$missing" ]; then
  echo "collect-libs: missing libraries:" >&2
  echo "$missing" >&2
  exit 1
fi
for bin in "$@"; do ldd "$bin"; done | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    ld-linux*|libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libutil.so*|libgcc_s.so*|libstdc++.so*) ;;
    libcuda.so*|libnvidia-*|libcudart.so*|libnccl.so*|libcublas*|libnvrtc*|libnvJitLink*|libcurand*) ;;
    *) cp -L "$lib" "$dest/" && echo "collect-libs: $lib" ;;
  esac
done
