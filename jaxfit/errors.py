"""The errors a user can cause. Each message is one line, ready to print.

JaxfitError (a ValueError)       the base: the command line catches it once
  ConfigError                    a config: file, field, bad value, what is allowed
  RunDirError                    a run directory: its manifest, config or parts
  ExportError                    an export file that cannot be read
  ResourceError                  devices or memory that the run needs but lacks
"""

from __future__ import annotations


class JaxfitError(ValueError):
    """A user error: the message is one line, ready to print."""


class ConfigError(JaxfitError):
    """A config that does not validate (names the file, the field and what is allowed)."""


class RunDirError(JaxfitError):
    """A run directory that cannot be written, resumed or merged."""


class ExportError(JaxfitError):
    """An export file that is not a jaxfit export, or cannot be run here."""


class ResourceError(JaxfitError):
    """The run needs more devices or memory than there are."""
