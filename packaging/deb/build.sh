#!/usr/bin/env bash
# Builds the .deb: the release binary, the man page and completions generated from the CLI
# definition, then `cargo deb`. Prints the package path.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
cargo build --release -p mcpd-cli -p mcpd-daemon
mkdir -p target/release/assets
target/release/mcpd man | gzip -9n > target/release/assets/mcpd.1.gz
target/release/mcpd completions bash > target/release/assets/mcpd.bash
target/release/mcpd completions zsh > target/release/assets/_mcpd
target/release/mcpd completions fish > target/release/assets/mcpd.fish
cargo deb -p mcpd-cli --no-build --no-strip
