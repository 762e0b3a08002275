# shellcheck shell=bash
# Helpers shared by the scripts in this directory and the Makefile.
# Source it (`. scripts/lib.sh`); it defines functions only.

# as_root CMD [ARGS...]: run CMD as root -- directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: root or sudo is needed to run: $*" >&2
        return 1
    fi
}

# apt_install PACKAGE...: install Debian/Ubuntu packages non-interactively.
# Returns non-zero (after saying why) when apt-get is missing or the install fails.
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "apt-get is not available: cannot install $*" >&2
        return 1
    fi
    echo "Installing $* with apt-get ..." >&2
    local log status=0
    log=$(mktemp)
    # (apt's progress output goes to a log, shown only when something fails)
    {
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            as_root env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -qq --no-install-recommends "$@"
    } >"$log" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        cat "$log" >&2
        echo "error: apt-get could not install $*" >&2
    fi
    rm -f "$log"
    return "$status"
}

# stop_system_service NAME: stop the system service NAME if it is running and keep it
# from starting at boot. Debian's redis-server and postgresql packages start a
# system-wide server when installed; we only ever want our own throwaway ones.
# Works with systemd, with sysvinit scripts, and with neither (e.g. containers).
stop_system_service() {
    local name=$1
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        as_root systemctl disable --now "$name" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$name" ]; then
        if as_root "/etc/init.d/$name" status >/dev/null 2>&1; then
            echo "Stopping the system $name service that the package started ..." >&2
            as_root "/etc/init.d/$name" stop >/dev/null 2>&1 || true
        fi
        if command -v update-rc.d >/dev/null 2>&1; then
            as_root update-rc.d "$name" disable >/dev/null 2>&1 || true
        fi
    fi
}
