"""Warm start for the command line: a single fit whose config was seen before runs
from a saved executable, skipping validation, tracing, compiling and most imports.

An entry is keyed by everything that determines the computation: the config file's
bytes, the ``--set`` overrides, jaxfit's version and source files, the jax and
jaxlib versions and JAX platform settings. It holds the resolved config (as validated then), the flat input
arrays and the serialised executable. It lives in the private (0700) cache
directory: loading an executable runs code, so the directory must be trusted, as
JAX's own compilation cache is. Any problem loading an entry drops it and the run
goes the ordinary way.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from jaxfit import __version__
from jaxfit.run import caches as cache

FORMAT = 1


def key(config_path: str | None, overrides: Sequence[str]) -> str | None:
    """The entry key for a CLI invocation (None when the config file cannot be read)."""
    h = hashlib.sha256()
    try:
        h.update(Path(config_path).read_bytes() if config_path else b"<defaults>")
    except OSError:
        return None
    # jaxfit's own source (size and mtime of each module), so an edited checkout
    # never runs an executable built from older code
    package = Path(__file__).parents[1]  # the whole package: an edit in core/ counts too
    source = [
        f"{p.relative_to(package)}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
        for p in sorted(package.rglob("*.py"))
    ]
    parts = [__version__, version("jax"), version("jaxlib"), *source, *overrides]
    parts += [
        f"{v}={os.environ.get(v, '')}" for v in ("JAX_PLATFORMS", "JAX_ENABLE_X64", "JAX_NUM_CPU_DEVICES")
    ]
    h.update(json.dumps([FORMAT, *parts]).encode())
    return h.hexdigest()


def _entry(digest: str) -> Path | None:
    base = cache.default_dir()
    return None if base is None else base / "warm" / digest


def _named_files(config: dict[str, Any]) -> dict[str, str]:
    """The digests of the files a resolved config (a plain dict) names."""
    from jaxfit.plan.functions import named_sources

    return named_sources(config["data"].get("file"), config["model"].get("function"))


def load(digest: str) -> tuple[dict[str, Any], Any] | None:
    """``(resolved config dict, named outputs)`` of a saved fit, run now; None if absent."""
    entry = _entry(digest)
    if entry is None or not (entry / "entry.json").is_file():  # written last
        return None
    try:
        import jax
        from jax.experimental import serialize_executable

        meta = json.loads((entry / "entry.json").read_text())
        if meta.get("files", {}) != _named_files(meta["config"]):
            raise ValueError("a file the config names has changed")
        with np.load(entry / "inputs.npz") as z:
            inputs = [z[f"arr_{i}"] for i in range(len(z.files))]
        in_tree = jax.tree.structure((tuple(inputs), {}))
        out_tree = jax.tree.structure(dict.fromkeys(meta["outputs"], 0))
        compiled = serialize_executable.deserialize_and_load(
            (entry / "exe.bin").read_bytes(), in_tree, out_tree, execution_devices=jax.local_devices()[:1]
        )
        with jax.enable_x64(meta["config"]["precision"] == "float64"):
            outputs = jax.device_get(compiled(*inputs))
        return meta["config"], outputs
    except Exception:  # a stale or broken entry: forget it, run the ordinary way
        shutil.rmtree(entry, ignore_errors=True)
        return None


def save(
    digest: str, config: dict[str, Any], compiled: Any, inputs: list[np.ndarray], outputs: dict[str, Any]
) -> bool:
    """Save a fit's executable for the next run with the same key; False if it cannot
    be serialised or does not reload to the same outputs."""
    entry = _entry(digest)
    if entry is None:
        return False
    try:
        import jax
        from jax.experimental import serialize_executable

        blob, in_tree, out_tree = serialize_executable.serialize(compiled)
        reloaded = serialize_executable.deserialize_and_load(
            blob, in_tree, out_tree, execution_devices=jax.local_devices()[:1]
        )
        with jax.enable_x64(config["precision"] == "float64"):
            again = reloaded(*inputs)
        if any(
            not np.array_equal(np.asarray(again[k]), np.asarray(v), equal_nan=True)
            for k, v in outputs.items()
        ):
            return False
    except Exception:  # e.g. an executable that came from JAX's cache cannot be re-serialised
        return False
    from jaxfit.output.atomic import write_atomic

    cache.private_dir(entry.parent)
    cache.private_dir(entry)
    buf = io.BytesIO()
    np.savez(buf, *inputs)
    write_atomic(entry / "inputs.npz", buf.getvalue())
    write_atomic(entry / "exe.bin", bytes(blob))
    files = _named_files(config)
    write_atomic(
        entry / "entry.json", json.dumps({"config": config, "outputs": sorted(outputs), "files": files})
    )
    return True
