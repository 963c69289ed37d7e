#!/usr/bin/env bash
# Fetches the OHIF viewer's own production build (the dist/ of the npm package @ohif/app)
# into a cache folder, once per version: `npm pack` downloads only that package's tarball
# (its dependencies are already bundled into dist/), so this takes seconds.
# Usage: infra/ohif/install.sh [cache dir, default .cache/ohif]  -> prints the dist/ path.
set -euo pipefail
VERSION="3.13.2"  # pinned: tests/test_browser_clients.py drives exactly this build
cache="${1:-$(dirname "$0")/../../.cache/ohif}"
dist="$cache/$VERSION/dist"
if [[ ! -f "$dist/index.html" ]]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "@ohif/app@$VERSION" >/dev/null)
  tar -xzf "$work/ohif-app-$VERSION.tgz" -C "$work"
  mkdir -p "$cache/$VERSION"
  rm -rf "$dist"
  mv "$work/package/dist" "$dist"
fi
cd "$dist" && pwd
