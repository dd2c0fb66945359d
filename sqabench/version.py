"""The version, in a module of its own: reachable as ``sqabench.version`` even when a folder named
``sqabench`` in the current directory shadows the package itself (a namespace package)."""

__version__ = "0.2.0"
