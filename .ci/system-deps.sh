#!/usr/bin/env bash
# System packages the tests need, installed by .ci/run (as root, fresh Debian) before `make test`.
# Idempotent: installs only what is missing, so a prepared machine costs a few dpkg queries.
#   libcairo2              cairosvg rasterises the facesjs SVGs (cartoon-faces builder)
#   nodejs, npm            run facesjs and install the npm packages of the cartoon-faces / emoji builders
#   dataset-fashion-mnist  the real Fashion-MNIST files (the builder's Debian source; one test reads them)
#   chromium               the headless browser of the web editor's end-to-end test (driven by Playwright)
set -euo pipefail

need=()
for pkg in libcairo2 dataset-fashion-mnist chromium; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)

if [ "${#need[@]}" -eq 0 ]; then
    echo "system-deps: all present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: missing ${need[*]} (run as root to install them)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "system-deps: installing ${need[*]}"
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}"
}
