#!/usr/bin/env bash
# The test command: installs the pinned emulator if needed, then runs every test. The
# integration tests start their own emulators through tests/integration/harness.rs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup-emulator.sh
cargo test --all-targets "$@"
