#!/usr/bin/env bash
# Builds the Debian package: ./scripts/package.sh [BUILD_DIR] leaves
# BUILD_DIR/tusk_<version>_<arch>.deb (BUILD_DIR defaults to build/) and prints its path last.
# tuskd and tusk are built first when needed (only they, not the tests); a new build folder is
# configured RelWithDebInfo (the package's copies are stripped), an existing one is used as it
# is configured. With the binaries built, packing takes seconds.
# CPack's DEB generator does the packaging: see packaging/CMakeLists.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build}
for tool in cmake ninja cpack dpkg-deb dpkg-shlibdeps; do
  if ! command -v "$tool" >/dev/null; then
    echo "package.sh: $tool is missing; run ./scripts/install-deps.sh" >&2
    exit 1
  fi
done
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" --target tuskd tusk tusk_package_files

# A sanitizer build's package is for tests only (the integration suite packs build-asan too);
# its binaries are ~130 MB, which xz takes a minute and a half over: gzip it.
cpack_args=()
sanitize=$(sed -n 's/^TUSK_SANITIZE:STRING=//p' "$build/CMakeCache.txt")
if [ -n "$sanitize" ]; then
  echo "package.sh: $build is a TUSK_SANITIZE=$sanitize build: its package is for tests only" >&2
  cpack_args=(-D CPACK_DEBIAN_COMPRESSION_TYPE=gzip)
fi
deb_name=$(sed -n 's/^set(CPACK_DEBIAN_FILE_NAME "\(.*\)")$/\1/p' "$build/CPackConfig.cmake")
if [ -z "$deb_name" ]; then
  echo "package.sh: no CPACK_DEBIAN_FILE_NAME in $build/CPackConfig.cmake" >&2
  exit 1
fi
deb="$build/$deb_name"
rm -f "$deb"
if ! (cd "$build" &&
  cpack -G DEB --config CPackConfig.cmake "${cpack_args[@]}" >cpack.log 2>&1); then
  cat "$build/cpack.log" >&2
  echo "package.sh: cpack failed (log: $build/cpack.log)" >&2
  exit 1
fi
if [ ! -f "$deb" ]; then
  cat "$build/cpack.log" >&2
  echo "package.sh: cpack did not write $deb" >&2
  exit 1
fi
echo "$deb"
