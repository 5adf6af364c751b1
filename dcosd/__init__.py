"""dcosd — a data-center operating system in one binary."""

__version__ = "0.1.0"
