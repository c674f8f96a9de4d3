"""The one way evidence reaches Allure: every attachment goes through :func:`redact`.

Without an active Allure listener (no ``--alluredir``) these calls do nothing.
"""

from __future__ import annotations

import json
from typing import Any

import allure
from allure_commons.types import AttachmentType

from .redact import redact


def attach_text(body: str | bytes, name: str, command: str = "") -> None:
    """Attach text (command output, logs) to the current test or step, secrets masked;
    ``command``: the command that printed it (see :func:`redact.redact`)."""
    allure.attach(redact(body, context=command), name=name, attachment_type=AttachmentType.TEXT)


def attach_json(obj: Any, name: str) -> None:
    """Attach a JSON document to the current test or step, secrets masked."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str, ensure_ascii=False)
    allure.attach(redact(text), name=name, attachment_type=AttachmentType.JSON)
