"""The ami-edge cloud companion: IoT rules as code, ingest, storage and the REST API.

Runs locally against a Mosquitto broker (``ami-edge cloud serve``, :mod:`cloud.local`) or in AWS
from the CloudFormation template of :mod:`cloud.template`; see docs/cloud/README.md. Nothing is
imported here, so ``import cloud`` stays cheap (the CLI registers its subcommand from it).
"""

__all__: list[str] = []
