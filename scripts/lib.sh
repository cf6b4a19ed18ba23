# Shared by scripts/serve, scripts/test and scripts/bench: install what is
# missing (Debian, as root) and configure build directories.

twister_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# need_pkgs CMD:PKG ... — installs PKG when CMD is not found (a CMD starting
# with / is a file to test instead: headers, .pc files, libraries).
need_pkgs() {
    local missing=() spec cmd pkg
    for spec in "$@"; do
        cmd=${spec%%:*} pkg=${spec#*:}
        if [[ $cmd == /* ]]; then
            compgen -G "$cmd" >/dev/null || missing+=("$pkg")
        else
            command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
        fi
    done
    ((${#missing[@]})) || return 0
    echo "installing: ${missing[*]}" >&2
    if [[ $(id -u) != 0 ]]; then
        echo "error: not root; install these first: apt-get install ${missing[*]}" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

need_build_deps() {
    need_pkgs gcc:gcc cc:gcc meson:meson ninja:ninja-build pkg-config:pkg-config \
        /usr/include/yaml.h:libyaml-dev /usr/include/check.h:check \
        /usr/lib/x86_64-linux-gnu/pkgconfig/check.pc:check \
        /usr/include/openssl/ssl.h:libssl-dev /usr/include/zlib.h:zlib1g-dev \
        /usr/include/crypt.h:libcrypt-dev
}

# setup_build DIR [meson options...] — configures DIR once; later calls are
# incremental (ninja reconfigures by itself when meson.build changes).
setup_build() {
    local dir=$1
    shift
    if [[ ! -f $dir/build.ninja ]]; then
        meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log" >&2; return 1; }
    fi
}
