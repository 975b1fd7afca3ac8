#!/usr/bin/env bash
# Screenshot a report's index.html in headless Chromium at 1280 px wide (the whole page), to look
# at it as a reader would:
#   scripts/screenshot-report.sh reports/tiny [OUT.png]     (default OUT: REPORT/screenshot.png)
# Also with prefers-color-scheme: dark when DARK=1. Prints SKIPPED and exits 0 when no Chromium is
# installed (apt install chromium); exits non-zero when Chromium fails or writes no image.
set -euo pipefail
report="${1:?usage: scripts/screenshot-report.sh REPORT_DIR [OUT.png]}"
out="${2:-$report/screenshot.png}"
page="$(cd "$report" && pwd)/index.html"
[ -f "$page" ] || { echo "error: $page: no such file (run bench report first)" >&2; exit 2; }
browser=""
for b in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$b" >/dev/null 2>&1; then browser="$b"; break; fi
done
if [ -z "$browser" ]; then
    echo "SKIPPED: no Chromium found (apt install chromium) — $page not screenshotted"
    exit 0
fi
height="${HEIGHT:-6000}"
flags=(--headless=new --no-sandbox --disable-gpu --hide-scrollbars --disable-extensions
       --no-first-run --allow-file-access-from-files "--window-size=1280,$height" "--screenshot=$out")
if [ "${DARK:-0}" = 1 ]; then flags+=(--force-dark-mode --blink-settings=preferredColorScheme=0); fi
"$browser" "${flags[@]}" "file://$page" >/dev/null 2>&1
[ -s "$out" ] || { echo "error: $browser wrote no screenshot to $out" >&2; exit 1; }
echo "wrote $out (1280 × $height px) of $page"
