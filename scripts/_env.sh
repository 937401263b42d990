# Shared by scripts/demo, scripts/test and scripts/bench: find Python 3.11+,
# make the project's virtual environment (.venv) and install into it.
# Re-installs only when pyproject.toml changed.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${CHATVAULT_VENV:-$top/.venv}"

find_python() {
    for candidate in "${PYTHON:-}" python3 python3.11 python3.12 python3.13; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
           "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
               2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "chatvault needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

ensure_venv() {
    local extras="$1"
    local stamp="$venv/.chatvault-installed-$extras"
    local want
    want=$(sha256sum "$top/pyproject.toml" | cut -d' ' -f1)
    if [ ! -x "$venv/bin/python" ]; then
        "$(find_python)" -m venv "$venv"
    fi
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "installing chatvault into $venv ..." >&2
        "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
        if [ "$extras" = "base" ]; then
            "$venv/bin/python" -m pip install --quiet -e "$top" >&2
        else
            "$venv/bin/python" -m pip install --quiet -e "$top[$extras]" >&2
        fi
        echo "$want" > "$stamp"
    fi
}
