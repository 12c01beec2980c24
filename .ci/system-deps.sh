#!/usr/bin/env bash
# System packages the tests need, installed by `make test` (and .ci/run) before the tests run.
# Idempotent: installs only what is missing, so a prepared machine costs a few dpkg queries.
# As root it installs them; otherwise it names what is missing and the command to install it, and exits 0 so the
# suite still runs (the tests that need a missing package skip), except under CI=true, where it fails.
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
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: missing ${need[*]}; install them with: sudo bash .ci/system-deps.sh" \
         "(until then the tests that need them are skipped)" >&2
    [ "${CI:-}" = "true" ] && exit 1
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "system-deps: installing ${need[*]}"
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}"
}
