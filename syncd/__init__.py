"""syncd: keeps a local SQLite copy of commerce product catalogs fresh."""

__version__ = "0.1.0"
