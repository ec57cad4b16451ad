"""ami-edge: the edge runtime of a DLMS/COSEM meter data concentrator.

The library runs without Greengrass; only :mod:`edge_core.bus.greengrass` imports ``awsiot``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
