#!/bin/sh
# The plugin API is exactly the functions declared in core/include/twister/:
#   - every tw_* function an in-tree module imports must be declared there
#     (modules use the public API only, like any outside plugin);
#   - the server executable must export every function declared there
#     (otherwise a plugin that uses it fails to load: undefined symbol),
#     and nothing else (core/exports.sh; otherwise the ABI covers whatever
#     the core happens not to make static).
# Usage: public_api.sh SOURCE_ROOT BUILD_ROOT
set -eu
src=$1 build=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/twister-api.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
status=0

# Declared functions: preprocess the umbrella header (no comments, no
# macros), keep tw_ identifiers followed by '('.
printf '#include <twister/twister.h>\n' |
    ${CC:-cc} -E -P -I"$src/core/include" -x c - |
    grep -oE '\btw_[a-z0-9_]+[[:space:]]*\([^*]' | sed -E 's/[[:space:]]*\(.$//' | sort -u >"$tmp/declared"
[ -s "$tmp/declared" ] || { echo "public_api: no declarations found" >&2; exit 1; }

for so in "$build"/modules/*.so; do
    nm -D --undefined-only "$so" | awk '{print $NF}' | grep '^tw_' | sort -u >"$tmp/used" || true
    comm -23 "$tmp/used" "$tmp/declared" >"$tmp/bad"
    if [ -s "$tmp/bad" ]; then
        echo "public_api: $(basename "$so") uses functions outside the public headers:" >&2
        sed 's/^/  /' "$tmp/bad" >&2
        status=1
    fi
done

exe=$build/core/twister
if [ -x "$exe" ]; then
    # Defined dynamic symbols, minus those a copy relocation put there: data
    # of a shared library the executable uses directly (libc's stdout, the
    # sanitizer runtime's option flags), which the linker must list in the
    # executable but which belong to that library.
    readelf -rW "$exe" | awk '$3 ~ /^R_[A-Z0-9_]+_COPY$/ {print $5}' | sed 's/@.*//' |
        sort -u >"$tmp/copied"
    nm -D --defined-only "$exe" | awk '{print $NF}' | sed 's/@.*//' | sort -u |
        comm -23 - "$tmp/copied" >"$tmp/exported"
    comm -23 "$tmp/declared" "$tmp/exported" >"$tmp/missing"
    if [ -s "$tmp/missing" ]; then
        echo "public_api: the twister executable does not export these public functions:" >&2
        sed 's/^/  /' "$tmp/missing" >&2
        status=1
    fi
    comm -13 "$tmp/declared" "$tmp/exported" >"$tmp/extra"
    if [ -s "$tmp/extra" ]; then
        echo "public_api: the twister executable exports symbols no public header declares:" >&2
        sed 's/^/  /' "$tmp/extra" >&2
        status=1
    fi
else
    echo "public_api: $exe not built" >&2
    status=1
fi
[ $status -eq 0 ] && echo "public_api: $(wc -l <"$tmp/declared") functions, exported exactly; OK"
exit $status
