"""sqabench: benchmark Sparse Query Attention (Filipek 2025, arXiv 2510.01817) on real hardware.

Importing the package touches neither CUDA nor any global torch setting.
"""

from sqabench.version import __version__

__all__ = ["__version__"]
