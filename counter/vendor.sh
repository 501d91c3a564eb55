#!/usr/bin/env bash
# Refresh counter/vendor/ from the npm packages pinned in package-lock.json. The app serves
# the copies, so `make run` needs no front-end step; run this only to change a version.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --ignore-scripts --no-audit --no-fund
mkdir -p vendor
cp node_modules/jsqr/dist/jsQR.js vendor/jsQR.js
cp node_modules/jsqr/LICENSE vendor/jsQR.LICENSE
version=$(node -p "require('./node_modules/jsqr/package.json').version")
printf 'jsqr %s (Apache-2.0): QR decoder where the browser has no BarcodeDetector\n' "$version" \
  > vendor/VERSIONS
rm -rf node_modules
