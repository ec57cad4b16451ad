"""Lambda entry points named by the template: ``ingest``, ``alarm``, ``documents`` and ``api``.

Each handler builds its stores once per container from the environment the template sets
(``AMI_BACKEND=aws``: S3/SQS/DynamoDB named by ``AMI_*`` variables; ``AMI_BACKEND=local``:
``AMI_DATA_DIR``), then delegates to the same code the local stack runs in-process.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from cloud.api import ApiApp
from cloud.events import DocumentIngestor
from cloud.ingest import Ingestor
from cloud.storage.base import Stores
from edge_core.errors import ConfigError

__all__ = ["alarm", "api", "documents", "ingest", "reset"]

_lock = threading.Lock()
_state: dict[str, Stores] = {}  # "stores": built once per Lambda container
_publishers: dict[str, Any] = {}  # "publisher": the IoT data-plane client, once per container


def _get_stores() -> Stores:
    with _lock:
        if "stores" not in _state:
            backend = os.environ.get("AMI_BACKEND", "aws")
            if backend == "aws":
                from cloud.storage.aws import aws_stores_from_env

                _state["stores"] = aws_stores_from_env(os.environ)
            elif backend == "local":
                from cloud.storage.local import open_local_stores

                data_dir = os.environ.get("AMI_DATA_DIR", "cloud-data")
                _state["stores"] = open_local_stores(data_dir)[0]
            else:
                raise ConfigError(f"unknown backend {backend!r}", path="AMI_BACKEND")
        return _state["stores"]


def reset(stores: Stores | None = None) -> None:
    """Replace (or forget) the cached stores; for tests and warm-container reconfiguration."""
    with _lock:
        _state.pop("stores", None)
        _publishers.clear()
        if stores is not None:
            _state["stores"] = stores


def ingest(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The ``ami_ingest`` rule's Lambda action (``data`` = base64 batch)."""
    return Ingestor(_get_stores()).handle_event(event).to_dict()


def alarm(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The ``ami_alarms_oms`` rule's Lambda action (the alarm document)."""
    return Ingestor(_get_stores()).handle_alarm(event).to_dict()


def documents(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The ``ami_documents`` and ``ami_read_responses`` rules' Lambda action."""
    return DocumentIngestor(_get_stores()).handle(event)


def _publisher() -> Any:
    with _lock:
        if "publisher" not in _publishers:
            from cloud.storage.aws import IotDataPublisher

            _publishers["publisher"] = IotDataPublisher(os.environ.get("AMI_IOT_ENDPOINT") or None)
        return _publishers["publisher"]


def api(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """API Gateway proxy integration; the key is checked by API Gateway (ApiKeyRequired).
    Read commands are published through IoT Core's data plane (``AMI_IOT_ENDPOINT``)."""
    publisher = _publisher() if os.environ.get("AMI_BACKEND", "aws") == "aws" else None
    return ApiApp(
        _get_stores(),
        api_key=os.environ.get("AMI_API_KEY") or None,
        publisher=None if publisher is None else publisher.publish,
    ).handle(event)
