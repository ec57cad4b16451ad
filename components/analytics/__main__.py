"""``python -m components.analytics``: the Run step of com.amiedge.Analytics."""

from components._main import run_component
from components.analytics.app import AnalyticsApp

raise SystemExit(run_component("analytics", AnalyticsApp))
