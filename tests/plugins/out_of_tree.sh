#!/bin/sh
# A plugin built the way an outside author builds one: the compiler,
# pkg-config and the installed headers, nothing else. Checks
#   1. the uninstalled twister.pc (meson-uninstalled/) and
#   2. a real `meson install --destdir` tree (headers under include/twister,
#      twister.pc, modules in moduledir, the test-only crash.so not installed),
# then loads each result with the server's loader (test_module --load);
# and in both, builds the plugin's own unit test (oot_plugin_test.c) with
# `pkg-config --cflags --libs twister-test` and runs it on that plugin.
# Usage: out_of_tree.sh SOURCE_ROOT BUILD_ROOT TEST_MODULE_EXE
set -eu
src=$1 build=$2 loader=$3
cc=${CC:-cc}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/twister-oot.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

fail() { echo "out_of_tree: FAIL: $*" >&2; exit 1; }

# Builds hello.c into $1 with $2 as the pkg-config environment, twice: the
# documented command line, then as strict as a picky author would be.
build_hello() {
    out=$1
    cflags=$(pkg-config --cflags twister) || fail "pkg-config --cflags twister"
    echo "cflags: $cflags"
    # shellcheck disable=SC2086 # word splitting of cflags is the point
    $cc -shared -fPIC $cflags -o "$out" "$src/modules/hello/hello.c" ||
        fail "cc -shared -fPIC \$(pkg-config --cflags twister) failed"
    # shellcheck disable=SC2086
    $cc -shared -fPIC -std=c11 -Wall -Wextra -Wpedantic -Werror $cflags -o "$out.strict" \
        "$src/modules/hello/hello.c" ||
        fail "the public headers are not clean under -std=c11 -Wpedantic"
    if command -v c++ >/dev/null 2>&1; then
        printf '#include <twister/twister.h>\nint main() { return TW_ABI_MAJOR - 1; }\n' >"$tmp/cxx.cc"
        # shellcheck disable=SC2086
        c++ -fsyntax-only -Wall -Wextra -Werror $cflags "$tmp/cxx.cc" ||
            fail "the public headers do not compile as C++"
    fi
    got=$("$loader" --load "$out") || fail "the loader refused $out"
    [ "$got" = "hello 1.0.0" ] || fail "loaded '$got', expected 'hello 1.0.0'"
}

# Builds the plugin test against libtwister-test and runs it on plugin $1;
# $2 is where the library is (the run-time search path a test needs when
# the library is not in a system directory).
# A sanitizer build's library needs its runtime first in the program.
sanitize_flags() {
    if readelf -d "$1" 2>/dev/null | grep -q 'libasan'; then
        echo "-fsanitize=address,undefined"
    fi
}

build_plugin_test() {
    plugin=$1 libdir=$2
    flags=$(pkg-config --cflags --libs twister-test) || fail "pkg-config --cflags --libs twister-test"
    echo "twister-test: $flags"
    # shellcheck disable=SC2086
    $cc -std=c11 -Wall -Wextra -Werror $(sanitize_flags "$libdir/libtwister-test.so") \
        -o "$tmp/oot_plugin_test" "$src/tests/plugins/oot_plugin_test.c" $flags ||
        fail "cc oot_plugin_test.c \$(pkg-config --cflags --libs twister-test) failed"
    LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$tmp/oot_plugin_test" "$plugin" ||
        fail "the out-of-tree plugin's own test failed"
}

echo "== uninstalled: $build/meson-uninstalled/twister-uninstalled.pc"
PKG_CONFIG_PATH=$build/meson-uninstalled PKG_CONFIG_LIBDIR=$build/meson-uninstalled \
    build_hello "$tmp/hello-uninstalled.so"
PKG_CONFIG_PATH=$build/meson-uninstalled PKG_CONFIG_LIBDIR=$build/meson-uninstalled \
    build_plugin_test "$tmp/hello-uninstalled.so" "$build/core/testing"
moduledir=$(PKG_CONFIG_LIBDIR=$build/meson-uninstalled pkg-config --variable=moduledir twister)
[ "$moduledir" = "$build/modules" ] || fail "uninstalled moduledir is '$moduledir'"

# The guide's "Testing your plugin" example, as printed there (check).
if pkg-config --exists check; then
    echo "== modules/README.md: Testing your plugin"
    awk '/^## Testing your plugin/ {on = 1} on && /^```c$/ {grab = 1; next}
         grab && /^```$/ {exit} grab {print}' "$src/modules/README.md" >"$tmp/guide_test.c"
    [ -s "$tmp/guide_test.c" ] || fail "no C example in the guide's Testing your plugin"
    flags=$(PKG_CONFIG_PATH=$build/meson-uninstalled pkg-config --cflags --libs twister-test check)
    # shellcheck disable=SC2086
    $cc -Wall -Wextra -Werror $(sanitize_flags "$build/core/testing/libtwister-test.so") \
        -o "$tmp/guide_test" "$tmp/guide_test.c" $flags ||
        fail "the guide's test example does not build"
    LD_LIBRARY_PATH=$build/core/testing${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
        TWISTER_MODULE_DIR=$build/modules CK_FORK=no "$tmp/guide_test" ||
        fail "the guide's test example fails"
fi

echo "== installed: meson install --destdir"
root=$tmp/root
meson install -C "$build" --no-rebuild --destdir "$root" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "meson install"; }
pc=$(find "$root" -name twister.pc | head -n 1)
[ -n "$pc" ] || fail "twister.pc was not installed"
for h in twister module http conf loop stream pool log; do
    [ -f "$(find "$root" -path "*/include/twister/$h.h" | head -n 1)" ] ||
        fail "include/twister/$h.h was not installed"
done
PKG_CONFIG_LIBDIR=$(dirname "$pc") PKG_CONFIG_PATH= PKG_CONFIG_SYSROOT_DIR=$root \
    build_hello "$tmp/hello-installed.so"
[ -f "$(find "$root" -path "*/include/twister/testing.h" | head -n 1)" ] ||
    fail "include/twister/testing.h was not installed"
[ -f "$(dirname "$pc")/twister-test.pc" ] || fail "twister-test.pc was not installed next to twister.pc"
testlib=$(find "$root" -name 'libtwister-test.so' | head -n 1)
[ -n "$testlib" ] || fail "libtwister-test.so was not installed"
PKG_CONFIG_LIBDIR=$(dirname "$pc") PKG_CONFIG_PATH= PKG_CONFIG_SYSROOT_DIR=$root \
    build_plugin_test "$tmp/hello-installed.so" "$(dirname "$testlib")"
moduledir=$(PKG_CONFIG_LIBDIR=$(dirname "$pc") PKG_CONFIG_PATH= pkg-config --variable=moduledir twister)
case $moduledir in "$root"/*) ;; *) moduledir=$root$moduledir ;; esac
for m in hello echo static redirect; do
    [ -f "$moduledir/$m.so" ] || fail "$m.so is not in moduledir ($moduledir)"
done
[ ! -e "$moduledir/crash.so" ] || fail "the test-only crash.so was installed"
echo "out_of_tree: OK"
