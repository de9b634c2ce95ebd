#!/usr/bin/env bash
# Long-run property testing of every parser entry point (tests/parsers_never_panic.rs): each target runs
# for ESCALATION_BOT_FUZZ_SECONDS (default 600, ten minutes) instead of its fixed CI count, on arbitrary
# Unicode, arbitrary bytes and text shaped like real mail, and prints how many cases it ran. A panic fails
# the run with the input that caused it.
#
#   scripts/fuzz.sh            # ten minutes a target (five tests, ten targets: about 100 minutes)
#   ESCALATION_BOT_FUZZ_SECONDS=60 scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export ESCALATION_BOT_FUZZ_SECONDS="${ESCALATION_BOT_FUZZ_SECONDS:-600}"
cargo test --release --test parsers_never_panic -- --test-threads=1 --nocapture 2>&1 | grep -E 'fuzz [a-z_ ]+: |test result|panicked'
