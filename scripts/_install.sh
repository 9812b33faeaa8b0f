# Sourced by scripts/demo and scripts/test: Debian packages, then a virtualenv in .venv with nocry.
# Safe to run again; it only installs what is missing.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
    echo "nocry needs root (fanotify, cgroups): run with sudo" >&2
    exit 2
fi
need=()
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
command -v setpriv >/dev/null || need+=(util-linux)
command -v mount >/dev/null || need+=(mount)
for pkg in ${NOCRY_EXTRA_DEBS:-}; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
