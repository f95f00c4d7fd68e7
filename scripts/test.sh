#!/usr/bin/env bash
# The one command that builds tusk and passes every test on a fresh Debian 12 machine:
# installs packages, builds, runs the unit and integration suites (integration tests start their
# own radosgw), then builds again with ASan+UBSan and runs the whole suite under it.
# Then a ThreadSanitizer build of the concurrent parts (the async S3 client, the store, the fill
# and request state machines across their threads, peers, metrics and the access log, tuskd
# under the many-clients fill, admin and fleet tests, and `tusk serve`), and the fuzz targets built with clang as
# libFuzzer targets (ASan+UBSan) in build-fuzz/, each fuzzing for TUSK_FUZZ_SECONDS (10).
# TUSK_SKIP_ASAN=1 / TUSK_SKIP_TSAN=1 / TUSK_SKIP_FUZZ=1 skip those passes (for quick local runs
# only; CI runs them).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
jobs=$(nproc)

build_and_test() {
  local dir=$1; shift
  cmake -S . -B "$dir" -G Ninja "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  (cd "$dir" && ctest --output-on-failure -j 1 --timeout 3600)
}

echo "== release build: unit + integration"
build_and_test build -DCMAKE_BUILD_TYPE=RelWithDebInfo

if [ "${TUSK_SKIP_ASAN:-0}" != 1 ]; then
  echo "== ASan+UBSan build: unit + integration"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  build_and_test build-asan -DCMAKE_BUILD_TYPE=Debug -DTUSK_SANITIZE=asan
fi
if [ "${TUSK_SKIP_TSAN:-0}" != 1 ]; then
  echo "== TSan build: concurrent parts"
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTUSK_SANITIZE=tsan >/dev/null
  cmake --build build-tsan -j "$jobs" --target tuskd tusk s3_client_test cache_store_test \
    proxy_fetch_test proxy_fill_table_test proxy_request_test proxy_peers_test proxy_metrics_test \
    proxy_access_log_test proxy_vary_test
  export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
  (cd build-tsan && ctest --output-on-failure \
    -R '^(s3_client_test|cache_store_test|proxy_fetch_test|proxy_fill_table_test|proxy_request_test|proxy_peers_test|proxy_metrics_test|proxy_access_log_test|proxy_vary_test)$')
  # The slow-reader memory test measures RSS, which TSan's shadow memory makes meaningless;
  # it runs in the two passes above.
  TUSKD=$PWD/build-tsan/proxy/tuskd TUSK_SANITIZER=tsan PYTHONDONTWRITEBYTECODE=1 \
    /usr/bin/python3 -m pytest -x -q -p no:cacheprovider --basetemp="$PWD/build-tsan/pytest-tmp" \
    tests/integration/test_fill.py tests/integration/test_admin.py tests/integration/test_fleet.py \
    tests/integration/test_http_cache.py tests/integration/test_access.py \
    -k "not two_hundred_slow_readers"
  # tusk serve: registrations on a worker pool over one shared registry, the HTTP thread beside.
  TUSKD=$PWD/build-tsan/proxy/tuskd TUSK_CLI=$PWD/build-tsan/installer/tusk TUSK_SANITIZER=tsan \
    PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 -m pytest -x -q -p no:cacheprovider \
    --basetemp="$PWD/build-tsan/pytest-tmp-serve" tests/integration/test_image_service.py
fi
if [ "${TUSK_SKIP_FUZZ:-0}" != 1 ]; then
  # Only the fuzz targets and the libraries they link are built here (`fuzz` target), not the
  # whole project. A crash leaves its input in build-fuzz/tests/fuzz/artifacts/.
  echo "== clang libFuzzer build: fuzz targets (ASan+UBSan), ${TUSK_FUZZ_SECONDS:-10} s each"
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DTUSK_SANITIZE=asan -DTUSK_FUZZ=libfuzzer -DTUSK_FUZZ_SECONDS="${TUSK_FUZZ_SECONDS:-10}" \
    >/dev/null
  cmake --build build-fuzz -j "$jobs" --target fuzz
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  (cd build-fuzz && ctest --output-on-failure -L fuzz -j "$jobs")
fi
echo "== all tests passed"
