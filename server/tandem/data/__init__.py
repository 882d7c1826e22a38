"""Data files: secret rules (see README.md here)."""
