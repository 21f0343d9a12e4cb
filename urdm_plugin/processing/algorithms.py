"""The provider's algorithms (one instance each, in toolbox order)."""


def all_algorithms():
    from .alg_sheet import MapSheetAlgorithm  # map products (issue 7)
    from .alg_unmix import UnmixAlgorithm
    from .alg_vca import VcaAlgorithm

    return [UnmixAlgorithm(), VcaAlgorithm(), MapSheetAlgorithm()]
