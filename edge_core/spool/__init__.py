"""The durable SQLite spool (one owner process): readings in, sealed batches out.

See :mod:`edge_core.spool.store` for the theory of operation.
"""

from edge_core.spool.salvage import SalvageReport
from edge_core.spool.store import OutboxItem, PutResult, Spool, SpoolStats

__all__ = ["OutboxItem", "PutResult", "SalvageReport", "Spool", "SpoolStats"]
