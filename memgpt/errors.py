"""User-facing errors: the CLI prints these as one line and exits non-zero."""


class MemGPTError(Exception):
    """A problem with the user's input, options or files (not a bug in memgpt)."""
