"""Data: annotation formats, the MCL-Digits benchmark, datasets and the ``data`` CLI commands.

Kept import-light on purpose: import the submodule you need (``modweave.data.digits`` ...).
"""
