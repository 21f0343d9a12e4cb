"""The provider's algorithms (filled in by the Processing work)."""


def all_algorithms():
    return []
