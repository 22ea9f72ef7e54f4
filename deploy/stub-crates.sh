#!/bin/sh
# Used by deploy/Dockerfile (and deploy/check.sh): copies the workspace's manifests
# (every Cargo.toml, and Cargo.lock) from SRC to DEST and gives each package empty
# `src/lib.rs` and `src/main.rs`, so `cargo build` can compile every dependency in a
# layer that only changes when a manifest or the lock file changes.
#
# Usage: stub-crates.sh SRC DEST
set -eu
src=$1
dest=$2
mkdir -p "$dest"
cp "$src/Cargo.lock" "$dest/Cargo.lock"
cd "$src"
find . -name Cargo.toml -not -path './target/*' -not -path './deploy/*' | while read -r manifest; do
  dir=$(dirname "$manifest")
  mkdir -p "$dest/$dir"
  cp "$manifest" "$dest/$manifest"
  if [ "$dir" != "." ]; then
    mkdir -p "$dest/$dir/src"
    echo 'fn main() {}' >"$dest/$dir/src/main.rs"
    : >"$dest/$dir/src/lib.rs"
  fi
done
