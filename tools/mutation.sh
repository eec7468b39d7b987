#!/bin/sh
# Mutation campaign over the core modules listed in [tool.mutmut] (pyproject.toml); needs the
# `mutation` extra (pip install -e '.[mutation]').  Runs in a scratch copy so the worktree never
# gets a mutants/ directory, with one worker (the machine is shared).  Usage:
#   tools/mutation.sh [SCRATCH_DIR]        (default /tmp/pilot-mutation)
# then read the summary it prints, or `cd SCRATCH_DIR && mutmut results` / `mutmut show NAME`.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
scratch=${1:-/tmp/pilot-mutation}
mkdir -p "$scratch"
# copy sources and tests, keep an earlier run's mutants/ cache (mutmut resumes from it)
tar -C "$here" --exclude=.git --exclude=mutants --exclude='__pycache__' --exclude=.hypothesis \
    -cf - pilot_proto tests vectors spec conftest.py pyproject.toml | tar -C "$scratch" -xf -
cd "$scratch"
unset PYTHONPATH
# the mutants are in aead.py's Python code: sessions take the pure path unless a test asks for the C accelerator
# explicitly (tests/test_tunnel_pils_accel.py does, so the branches that call it are still tested)
export PILOT_PROTO_PURE=1
mutmut run --max-children 1 || true
mutmut results --all true > mutation-results.txt 2>&1 || mutmut results > mutation-results.txt 2>&1 || true
exec python "$here/tools/mutation_summary.py" mutation-results.txt
