#!/bin/bash -eu
# Build every fuzz/fuzz_*.py entry point with OSS-Fuzz's compile_python_fuzzer, with its seed corpus and
# the shared dictionary.  The same script serves OSS-Fuzz (fuzz/oss-fuzz/) and ClusterFuzzLite.
cd "$SRC/pilot-proto"
pip3 install .
corpora=$(mktemp -d)
pilot-proto fuzz --write-corpus "$corpora"
for fuzzer in fuzz/fuzz_*.py; do
  name=$(basename -s .py "$fuzzer")
  compile_python_fuzzer "$fuzzer"
  if [ -d "$corpora/$name" ]; then
    (cd "$corpora/$name" && zip -q -r "$OUT/${name}_seed_corpus.zip" .)
  fi
  cp fuzz/pilot.dict "$OUT/$name.dict"
done
