#!/usr/bin/env bash
# Regenerate the pictures in docs/images from docs/examples/rotherham-month: the final record of a case
# (the Word document), the board's digest and the monitoring report, as a board manager sees them.
# Needs LibreOffice (soffice) and poppler (pdftoppm); neither is needed to build, run or test the bot.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo build --quiet
bot=target/debug/escalation-bot
"$bot" simulate docs/examples/rotherham-month/scenario.json --save "$out/sim" >/dev/null
# The last record document sent to the people on the case (the written confirmation's), and the digest.
record=$(ls "$out"/sim/*.docx | sort | tail -2 | head -1)
digest=$(ls "$out"/sim/*-digest.html | sort | tail -1)
ESCALATION_BOT_DATABASE_URL="sqlite:$out/sim/store.sqlite3" \
  "$bot" report --board rotherham --from 2027-03-01 --to 2027-03-31 --html >"$out/report.html"
render() { # FILE NAME: the first two pages with text as docs/images/NAME-1.png, NAME-2.png
  soffice --headless --convert-to pdf --outdir "$out/pdf" "$1" >/dev/null 2>&1
  local pdf="$out/pdf/$(basename "${1%.*}").pdf" n=0
  local pages; pages=$(pdfinfo "$pdf" | awk '/^Pages:/ {print $2}')
  for page in $(seq 1 "$pages"); do
    # LibreOffice's HTML import can open with an empty page: skip pages without text.
    [ -n "$(pdftotext -f "$page" -l "$page" "$pdf" - | tr -d '[:space:]')" ] || continue
    n=$((n + 1))
    pdftoppm -r 70 -png -singlefile -f "$page" -l "$page" "$pdf" "docs/images/$2-$n"
    [ "$n" -lt 2 ] || break
  done
}
mkdir -p docs/images
rm -f docs/images/*.png
render "$record" record
render "$digest" digest
render "$out/report.html" report
ls docs/images
