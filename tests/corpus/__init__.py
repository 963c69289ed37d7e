"""The bad-input corpus: hostile files and strings, generated at test time (see build.py)."""
