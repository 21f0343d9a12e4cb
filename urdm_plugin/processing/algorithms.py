"""The provider's algorithms (filled in by the Processing work)."""


def all_algorithms():
    from .alg_sheet import MapSheetAlgorithm  # map products (issue 7)

    return [MapSheetAlgorithm()]
