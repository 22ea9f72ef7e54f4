#!/usr/bin/env bash
# Fetches GraphiQL's files again from the npm registry (`npm pack`) as SOURCES names them
# and checks their digests. To move to another version: change SOURCES (package@version
# and the digest `openssl dgst -sha384 -binary FILE | base64` prints), run this, and run
# `cargo nextest run -p console graphiql` and the browser test (`-p mailgate graphiql`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
grep -v '^#' "$here/SOURCES" | while read -r package inside name digest; do
  [ -n "$package" ] || continue
  dir="$work/${package//[@\/]/_}"
  if [ ! -d "$dir" ]; then
    mkdir -p "$dir"
    (cd "$dir" && npm pack --silent "$package" >/dev/null && tar xzf ./*.tgz)
  fi
  got="sha384-$(openssl dgst -sha384 -binary "$dir/$inside" | base64 -w0)"
  if [ "$got" != "$digest" ]; then
    echo "$package $inside: digest $got, SOURCES says $digest" >&2
    exit 1
  fi
  cp "$dir/$inside" "$here/$name"
  echo "$name from $package ($digest)"
done
