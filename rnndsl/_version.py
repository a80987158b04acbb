"""The version of rnndsl, in one place (the package, checkpoints and results record it)."""

__version__ = "0.1.0"
