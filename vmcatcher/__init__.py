"""vmcatcher: a subscriber for signed HEPiX Virtual Machine Image Lists.

The package is a library first; the four commands under ``vmcatcher.cli`` are
thin translation layers over it.
"""

__version__ = "0.7.0"
