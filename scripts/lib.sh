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

# Installing a Debian daemon (nginx, haproxy) normally starts its system
# service; a policy-rc.d that says "no" (101) keeps it from starting, and
# if it started anyway it is stopped again. Only the processes the scripts
# and tests start themselves ever serve.
need_daemon_pkg() { # binary package
    local bin=$1 pkg=$2
    if [[ -x $bin ]]; then return 0; fi
    local policy=/usr/sbin/policy-rc.d made=0 pidfile=/run/$pkg.pid had_pid=0
    [[ -s $pidfile ]] && had_pid=1
    if [[ $(id -u) == 0 && ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made=1
    fi
    local rc=0
    need_pkgs "$bin:$pkg" || rc=$?
    ((made)) && rm -f "$policy"
    ((rc == 0)) || return $rc
    if ((!had_pid)) && [[ -s $pidfile ]]; then
        local pid
        pid=$(cat "$pidfile")
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            echo "stopping the $pkg system service the package started (pid $pid)" >&2
            kill -QUIT "$pid" 2>/dev/null || true
        fi
    fi
    if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
        systemctl disable --now "$pkg" >/dev/null 2>&1 || true
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
