#!/usr/bin/env bash
# Set up this checkout on a Debian/Ubuntu machine: the Debian packages of requirements-apt.txt
# (through sudo unless root; apt-get runs only when one is missing), then .venv with requirements.txt
# and the optional export extras of requirements-export.txt (paddle2onnx, onnxruntime; CI tests them).
#   bash install.sh                      # then .venv/bin/python ... as in the README
#   bash install.sh --apt-only           # only the Debian packages (demo.py --setup)
#   PYTHON=python3.11 bash install.sh    # another interpreter for the virtual environment
set -euo pipefail
cd "$(dirname "$0")"

mapfile -t wanted < <(grep -v '^\s*#' requirements-apt.txt | grep -v '^\s*$')
missing=()
for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q "install ok installed" || missing+=("${pkg}")
done
if ((${#missing[@]})); then
    sudo=""
    [[ "$(id -u)" == 0 ]] || sudo="sudo"
    if ! command -v apt-get >/dev/null; then
        echo "install.sh: apt-get not found; install the Debian packages ${missing[*]} (or their files) by hand" >&2
        exit 1
    fi
    echo "install.sh: apt-get install ${missing[*]}" >&2
    ${sudo} apt-get update -q
    ${sudo} apt-get install -y -q "${missing[@]}"
fi

[[ "${1:-}" == --apt-only ]] && exit 0
"${PYTHON:-python3}" -m venv .venv
.venv/bin/pip install -q -r requirements.txt -r requirements-export.txt
