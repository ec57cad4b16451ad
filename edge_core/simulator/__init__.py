"""Simulated IDIS-style meters served over TCP (wrapper or HDLC framing)."""

from edge_core.simulator.model import SimulatedMeter
from edge_core.simulator.server import SimulatorHandle, serve_meters

__all__ = ["SimulatedMeter", "SimulatorHandle", "serve_meters"]
