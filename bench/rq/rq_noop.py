"""The no-op job the RQ comparison runs (importable by the RQ worker)."""


def noop():
    return None
