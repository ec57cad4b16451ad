"""``python -m components.concentrator``: the Run step of com.amiedge.Concentrator."""

from components._main import run_component
from components.concentrator.app import ConcentratorApp

raise SystemExit(run_component("concentrator", ConcentratorApp))
