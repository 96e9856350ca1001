"""JAX's persistent compilation cache in a private per-user directory.

The cache holds executables that JAX will run, so its directory must be private:
it is created with mode 0700, tightened to 0700 if we own it, and refused if
somebody else owns it. ``JAXFIT_CACHE_DIR`` moves it; ``JAXFIT_CACHE_DIR=off`` (or
the CLI's ``--no-cache``) turns it off. Libraries importing jaxfit are not affected:
only the command line, or an explicit ``enable()``, turns it on.
"""

from __future__ import annotations

import os
import stat
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


def enable(path: Path | None = None) -> Path | None:
    """Point JAX's persistent compilation cache at ``path`` (default: ``default_dir()``).

    Every compilation is cached, however fast. Returns the directory used, or None
    when the cache is turned off.
    """
    path = default_dir() if path is None else path
    if path is None:
        return None
    import jax

    xla = private_dir(private_dir(path) / "xla")
    jax.config.update("jax_compilation_cache_dir", str(xla))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return xla
