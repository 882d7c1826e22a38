"""tandem-ls: a local-first AI coding assistant as a language server."""

__version__ = "0.1.0"
