#!/usr/bin/env bash
# Prints the path of a Python >= 3.12 (Lambda's python3.12 runtime; the SSCD model package requires it) for the
# virtualenv: $PYTHON if it is one, else python3.13/python3.12/python3 on PATH, else pyenv's installed versions.
# Exits 1 with what to do when none is found.
set -u
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
candidates=()
[ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
candidates+=(python3.12 python3.13 python3)
root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for dir in $(ls -d "$root"/versions/3.1[2-9]* 2>/dev/null | sort -V); do candidates+=("$dir/bin/python3"); done
for c in "${candidates[@]}"; do
  path=$(command -v "$c" 2>/dev/null) || continue
  if ok "$path"; then echo "$path"; exit 0; fi
done
found=$(python3 --version 2>&1 || echo "no python3")
echo "PicTrace needs Python >= 3.12 (Lambda's runtime; the SSCD model package requires it), found only: $found." >&2
echo "Install one (e.g. 'pyenv install 3.12', 'uv python install 3.12', or your distribution's python3.12)" >&2
echo "and run again, or point PYTHON=/path/to/python3.12 at it." >&2
exit 1
