"""What jaxfit keeps between calls to run the next one faster, and ``clear_caches``.

Kept, each bounded: compiled programs (``aot``, and the jitted functions of
``single`` and ``batching.sharded``, 64 of each kind, least recently used first out), the
output buffers of the last batch on the devices (``batching.pipeline``: the next batch of the
same program writes into them) and up to 256 MB of recycled host memory for result
columns (``hostmem``). They pay in a loop of batches, the service and repeated CLI
runs; a library user who is done with jaxfit calls ``clear_caches()``.

Between processes: JAX's persistent compilation cache in a private per-user
directory (``default_dir()``). It holds executables that JAX will run, so it must be
private: created with mode 0700, tightened to 0700 if we own it, refused if somebody
else owns it. ``JAXFIT_CACHE_DIR`` moves it; ``JAXFIT_CACHE_DIR=off`` (or the CLI's
``--no-cache``) turns it off. The command line caches every compilation there; a
library process uses it for the programs that take a second or more to compile
(jaxfit's batch programs), from jaxfit's first compilation on, unless JAX was
already given a cache directory of its own.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from pathlib import Path

ENV = "JAXFIT_CACHE_DIR"
OFF = {"", "0", "off", "none", "false", "no"}


class CacheError(OSError):
    """The cache directory cannot be made private."""


def default_dir() -> Path | None:
    """Where the cache lives (None when turned off by ``JAXFIT_CACHE_DIR``)."""
    env = os.environ.get(ENV)
    if env is not None:
        return None if env.strip().lower() in OFF else Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxfit"


def private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) or check that an existing one is ours and private."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise CacheError(f"{path}: cache directory belongs to another user; set {ENV} to a private directory")
    if stat.S_IMODE(info.st_mode) & 0o077:
        path.chmod(0o700)
    return path


def enable(path: Path | None = None, *, everything: bool = True) -> Path | None:
    """Point JAX's persistent compilation cache at ``path`` (default: ``default_dir()``).

    ``everything``: cache every compilation, however fast (else JAX's own threshold,
    a second). Returns the directory used, or None when the cache is turned off.
    """
    path = default_dir() if path is None else path
    if path is None:
        return None
    import jax

    xla = private_dir(private_dir(path) / "xla")
    jax.config.update("jax_compilation_cache_dir", str(xla))
    if everything:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return xla


_asked = False


def keep_off() -> None:
    """No persistent cache by default in this process (the CLI's ``--no-cache``)."""
    global _asked
    _asked = True


def enable_by_default() -> None:
    """Once per process, before jaxfit's first compilation: the persistent cache at
    ``default_dir()`` for slow compilations, unless it is turned off, JAX already has
    a cache directory, or the directory cannot be made private (then nothing)."""
    global _asked
    if _asked:
        return
    _asked = True
    import jax

    if jax.config.jax_compilation_cache_dir:
        return
    with contextlib.suppress(OSError):  # a library call does not fail for want of a cache
        enable(everything=False)


def clear_caches() -> None:
    """Release every compiled program, kept device buffer and pooled host memory (a
    module not imported yet holds nothing, and is not imported here)."""
    modules = sys.modules
    if "jaxfit.run.aot" in modules:
        modules["jaxfit.run.aot"]._CACHE.clear()
    if "jaxfit.run.single" in modules:
        single = modules["jaxfit.run.single"]
        for fn in (single._compiled_step, single._compiled_init, single.compiled_fit):
            fn.cache_clear()
    if "jaxfit.run.batching.pipeline" in modules:
        modules["jaxfit.run.batching.sharded"].compiled_chunk.cache_clear()
        modules["jaxfit.run.batching.sharded"]._SHAPES.clear()
        modules["jaxfit.run.batching.pipeline"]._SPARE.clear()
    if "jaxfit.run.hostmem" in modules:
        modules["jaxfit.run.hostmem"].clear()
