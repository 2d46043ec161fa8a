"""Data readers per format and procedural generators (one file per family)."""
