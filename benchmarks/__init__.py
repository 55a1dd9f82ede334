"""The side-by-side speed harness (see harness.py); not part of the installed package."""
