#!/usr/bin/env bash
# Windows under Wine: builds the crate for x86_64-pc-windows-gnu and runs, under Wine, the two
# child-process examples (each must print what it prints on Linux), the library's unit tests,
# the both-runtime behaviour suite (tests/runtimes) and the Windows fault tests
# (tests/process_faults_windows.rs: a crash, exit, abort, a worker or a parent terminated from
# outside, a dying worker's last words). Installs what it needs
# on a fresh Debian machine: Wine, the mingw-w64 linker, the Rust target. About a minute of
# build and 40 s of tests on this project's 2-core VM, plus the installs.
#
# Wine 8 lacks `ProcessPrng` (bcryptprimitives.dll), which Rust's standard library (1.78 and
# later) imports: wine/prng.c builds a stand-in on RtlGenRandom, put next to the executables.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-pc-windows-gnu
if ! command -v wine >/dev/null || ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
    sudo=$( [ "$(id -u)" = 0 ] || echo sudo )
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wine gcc-mingw-w64-x86-64 >/dev/null
fi
rustup target add "$target"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export WINEDEBUG=-all            # Wine's own diagnostics off
mkdir -p "$CARGO_TARGET_DIR"
export WINEPREFIX="${WINEPREFIX:-$(cd "$CARGO_TARGET_DIR" && pwd)/wine-prefix}"

out="$CARGO_TARGET_DIR/$target/debug"
cargo build --quiet --target "$target" --examples --test runtimes --test process_faults_windows
# The library's own unit tests too (the rings' mapping of a section, among others).
cargo test --quiet --target "$target" --lib --no-run
mkdir -p "$out/deps" "$out/examples"
x86_64-w64-mingw32-gcc -shared -O2 -o "$out/bcryptprimitives.dll" \
    .ci/wine/prng.c .ci/wine/prng.def -ladvapi32
cp "$out/bcryptprimitives.dll" "$out/deps/"
cp "$out/bcryptprimitives.dll" "$out/examples/"
# The first run creates the prefix (a few seconds; it warns that wine32 is missing, which
# 64-bit programs do not need).
wineboot --init >/dev/null 2>&1 || true

# Each example prints under Wine what it prints on Linux.
for example in child_process child_process_channel; do
    expected=$(cargo run --quiet --example "$example")
    got=$(timeout 120 wine "$out/examples/$example.exe" | tr -d '\r')
    if [ "$got" != "$expected" ]; then
        echo "example $example under Wine printed:" >&2
        echo "$got" >&2
        echo "instead of:" >&2
        echo "$expected" >&2
        exit 1
    fi
done

unit=$(ls -t "$out"/deps/tinypool-*.exe | head -1)
timeout 300 wine "$unit"

# The behaviour suite, both runtimes (a harness=false binary: it exits non-zero on a failure).
# Wine itself fails now and then: once in about twenty runs a CreateProcessW failed with "Internal
# error" (os error 1359) on a case that passes otherwise. A case that fails is run once more,
# alone, and named in the log either way; it must pass then.
suite=$(ls -t "$out"/deps/runtimes-*.exe | head -1)
log="$CARGO_TARGET_DIR/wine-runtimes.log"
if ! timeout 900 wine "$suite" 2>&1 | tee "$log"; then
    failed=$(sed -n '/^failures:$/,/^test result/p' "$log" | tr -d '\r' | grep -E '^    [a-z_0-9:]+$' || true)
    [ -n "$failed" ] || { echo "the suite failed without naming a case"; exit 1; }
    echo "WINE: failed once, run again alone:" $failed
    # shellcheck disable=SC2086 # one argument per case name
    timeout 600 wine "$suite" $failed
fi

# The fault tests (a harness=false binary too). Wine does not enforce a Job Object's memory and
# CPU time limits: the two tests of resource_limits say they are skipped under it.
faults=$(ls -t "$out"/deps/process_faults_windows-*.exe | head -1)
timeout 300 wine "$faults"
