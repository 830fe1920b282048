"""Pinned numerical outputs of mixednn fits (see make_pinned.py and cases.py)."""
