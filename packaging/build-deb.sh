#!/usr/bin/env bash
# Build the Debian package: target/debian/cronmgr_<version>_<arch>.deb
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
cargo build --release --locked
mkdir -p target/completions
bin=target/release/cronmgr
"$bin" generate completions bash > target/completions/cronmgr.bash
"$bin" generate completions zsh > target/completions/_cronmgr
"$bin" generate completions fish > target/completions/cronmgr.fish
# The man page is checked in (man/cronmgr.1); refuse to package a stale one.
"$bin" generate man | cmp -s - man/cronmgr.1 || { echo "man/cronmgr.1 is stale: run cronmgr generate man > man/cronmgr.1" >&2; exit 1; }
cargo deb --no-build --no-strip
