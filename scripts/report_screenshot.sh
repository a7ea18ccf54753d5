#!/bin/sh
# Renders an evaluation report in headless Chromium with the network cut off, and saves a screenshot of it:
# the check that report.html is one self-contained page (styles, chart and answers inside it) that a browser
# shows as meant. Chromium comes from Debian's packages: apt-get install chromium fonts-noto-cjk
#   scripts/report_screenshot.sh outputs/pipeline/eval/report.html [report.png]
set -eu
page=$(realpath "$1")
shot=$(realpath "${2:-${page%.html}.png}")
# --no-sandbox: Chromium refuses to run as root with its sandbox; the proxy to a closed port stops any fetch
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --proxy-server=127.0.0.1:9 \
  --window-size=1400,3000 --screenshot="$shot" "file://$page" 2>/dev/null
echo "$shot"
