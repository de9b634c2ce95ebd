#!/usr/bin/env bash
# Long-run property testing of every parser entry point (tests/parsers_never_panic.rs): each target runs
# for ESCALATION_BOT_FUZZ_SECONDS (default 600, ten minutes) instead of its fixed CI count, on arbitrary
# Unicode, arbitrary bytes, text shaped like real mail, and hostile shapes (the pieces of inputs that once
# stalled a parser, repeated thousands of times: runs of `&`, paragraphs in a cell, nested content
# controls, quote levels, label-like lines), and prints how many cases it ran. A panic fails the run with
# the input that caused it, and so does a hostile input that takes a parser more than 10 s.
#
#   scripts/fuzz.sh            # ten minutes a target (eight tests, 17 targets: about three hours)
#   ESCALATION_BOT_FUZZ_SECONDS=60 scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export ESCALATION_BOT_FUZZ_SECONDS="${ESCALATION_BOT_FUZZ_SECONDS:-600}"
cargo test --release --test parsers_never_panic -- --test-threads=1 --nocapture 2>&1 | grep -E 'fuzz [a-z_ ]+: |test result|panicked'
