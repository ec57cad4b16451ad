"""Billing determinants with VEE for the cloud companion (see docs/billing.md).

Public entry points: :func:`cloud.billing.sql.determinants_for` (a fleet over the lake),
:func:`cloud.billing.determinants.compute_determinants` (one meter from captures),
:func:`cloud.billing.export.write_billing_export` (CSV files into an outbox).
"""

__all__: list[str] = []
