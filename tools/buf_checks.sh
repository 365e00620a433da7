#!/usr/bin/env bash
# Checks of the protobuf contracts with buf: lint (STANDARD + COMMENTS),
# formatting, and breaking changes (FILE) against an earlier commit.
#
# The breaking check compares protos/ in the working tree with protos/ at
# $BUF_BREAKING_AGAINST (default HEAD~1, the previous commit of the current
# branch; CI on a branch may set it to origin/main). It is skipped with a
# message when that commit does not exist (first commit, shallow clone) or has
# no protos/.
#
# google/rpc imports are staged into .build/proto-deps first (see buf.yaml).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

if [[ -x .venv/bin/python ]]; then
  python_bin="${PYTHON:-.venv/bin/python}"
else
  python_bin="${PYTHON:-python3}"
fi
if [[ -n "${BUF:-}" ]]; then
  buf_bin="$BUF"
elif command -v buf >/dev/null 2>&1; then
  buf_bin="buf"
else
  buf_bin=".venv/bin/buf"
fi
against_ref="${BUF_BREAKING_AGAINST:-HEAD~1}"

"$python_bin" tools/gen_protos.py --stage-deps >/dev/null

echo "buf lint"
"$buf_bin" lint

echo "buf format --diff --exit-code protos"
"$buf_bin" format --diff --exit-code protos

if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "buf breaking: skipped (not a git work tree)"
  exit 0
fi
if ! git rev-parse --verify --quiet "${against_ref}^{commit}" >/dev/null; then
  echo "buf breaking: skipped (${against_ref} does not exist: first commit or shallow clone)"
  exit 0
fi
if [[ -z "$(git ls-tree -d "$against_ref" protos)" ]]; then
  echo "buf breaking: skipped (${against_ref} has no protos/)"
  exit 0
fi

against_dir="$(mktemp -d)"
trap 'rm -rf "$against_dir"' EXIT
git archive "$against_ref" protos | tar -x -C "$against_dir"
cp buf.yaml "$against_dir/"
mkdir -p "$against_dir/.build"
cp -R .build/proto-deps "$against_dir/.build/"

echo "buf breaking protos --against ${against_ref}:protos"
"$buf_bin" breaking protos --against "$against_dir/protos"
