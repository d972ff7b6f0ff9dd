"""What ``/admin/status`` says about each served version's promotion approval; it never holds up serving.

An approval is usually given while the version already serves (as challenger), so the tags a version was loaded
with are not enough: after each registry poll, ``ModelManager.refresh`` hands the versions it serves to
``ApprovalBoard.update``, which reads their current tags (one registry call per served version per poll; a failed
read keeps the last tags and says so). ``describe`` does no I/O (``/readyz`` reads the status too): it checks the
``promotion_approval`` tag with the service's verify key against the version's ``manifest_sha256`` tag at the time
of the call, so an approval shows as expired the moment it expires (``core.approval.approval_status``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from platform_assets.core import registry
from platform_assets.core.approval import approval_status, parse_approval
from platform_assets.core.environment import Environment
from platform_assets.serving.signature import VerifyKey

logger = logging.getLogger(__name__)


class ApprovalBoard:
    """The last-read registry tags of each served version, and their approval verdicts for ``/admin/status``."""

    def __init__(self, verify_key: VerifyKey, environment: Environment) -> None:
        self.verify_key = verify_key
        self.environment = environment
        #: version number -> (its tags as last read, the error of the last read or None); replaced in one assignment.
        self._tags: dict[str, tuple[Mapping[str, str], str | None]] = {}

    def update(self, client: Any, model_name: str, versions: Iterable[str]) -> None:
        """Re-read the tags of ``versions`` (registry numbers); a failed read keeps the last tags, noted."""
        read: dict[str, tuple[Mapping[str, str], str | None]] = {}
        for version in versions:
            try:
                read[version] = (dict(client.get_model_version(model_name, version).tags or {}), None)
            except Exception as exc:  # the registry is down: serving goes on, the status says the tags are stale
                previous, _ = self._tags.get(version, ({}, None))
                read[version] = (previous, f"{type(exc).__name__}: {exc}")
                logger.warning("could not re-read the approval of %s v%s: %s", model_name, version, exc)
        self._tags = read

    def describe(self, version: str, loaded_tags: Mapping[str, str], now: datetime | None = None) -> dict[str, Any]:
        """The approval of served ``version`` (``state``, ``valid``, ``reason``, and who and until when), from its
        last-read tags, else the tags it was loaded with."""
        tags, read_error = self._tags.get(version, (loaded_tags, None))
        document = tags.get(registry.PROMOTION_APPROVAL_TAG)
        stale = {"tags_read_error": read_error} if read_error else {}
        key = self.verify_key
        if key.key is None:
            why = key.error or "no verify key is configured (PLATFORM_ENV=local)"
            unchecked: dict[str, Any] = {"state": "unverified", "valid": False, "reason": f"not checked: {why}"}
            if document:
                try:
                    unchecked["approval"] = parse_approval(document).describe()
                except ValueError as error:
                    unchecked["reason"] += f"; and the recorded approval is malformed: {error}"
            return {**unchecked, **stale}
        status = approval_status(
            document,
            key.key,
            model_version=f"v{version}",
            manifest_sha256=tags.get(registry.MANIFEST_SHA_TAG),
            environment=self.environment,
            now=now or datetime.now(UTC),
            retired_at=tags.get(registry.RETIRED_TAG),
        )
        return {**status.as_dict(), **stale}
