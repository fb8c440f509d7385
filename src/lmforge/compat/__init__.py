"""Workarounds for upstream bugs, one place each, every one with a test that notices the fix.

Each module names the bug, the version it was seen in and when it can be deleted.
"""
