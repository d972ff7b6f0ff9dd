"""The deployment environments both the control plane and the service know."""

from __future__ import annotations

from enum import StrEnum


class Environment(StrEnum):
    LOCAL = "local"
    STAGING = "staging"
    PROD = "prod"
