"""Approve a model version's promotion to champion (maker-checker), or list its approvals.

    python -m platform_assets.approve v3 --by "Jane Doe" --reason "canary metrics reviewed" [--expires-hours 72]
    python -m platform_assets.approve v3 --auto --reason "make demo"      # PLATFORM_ENV=local only, labelled
    python -m platform_assets.approve --list v3

The approver must be a named person who did not launch the version's training; the approval is signed with the
platform key, bound to the version's signed manifest and expires (default and maximum in ``core/slo.py``
``PROMOTION``). It is written to the version's lake folder and to its MLflow tag ``promotion_approval``. Reads the
platform settings (``PLATFORM_ENV``, ``PLATFORM_HOME``, ``PLATFORM_LAKE_URI``, ``MLFLOW_TRACKING_URI``,
``PLATFORM_SIGNING_KEY_FILE``, ``PLATFORM_VERIFY_KEY_FILE``) like the audit CLI. Exit 0 with the approval printed;
2 with the refusal on stderr (unknown or retired version, approver who trained it, empty name or reason, expiry out
of range, auto-approval outside local, a manifest that does not verify).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from platform_assets import settings
from platform_assets.audit import default_lake
from platform_assets.core import registry, signing, slo
from platform_assets.core.approval import AUTO_APPROVER, ApprovalRefused, approval_status
from platform_assets.defs.resources import signer as signer_for
from platform_assets.governance import approvals
from platform_assets.resources.mlflow import ModelRegistry

GATE = slo.PROMOTION


def default_registry(config: settings.PlatformSettings) -> ModelRegistry:
    return ModelRegistry(tracking_uri=settings.topology(config).mlflow_tracking_uri, model_name=registry.MODEL_NAME)


def list_approvals(version: str, *, as_json: bool) -> str:
    """Every approval of ``version``, oldest first, each with whether it lets the version be promoted now."""
    config = settings.load()
    lake, model_registry, signer = default_lake(), default_registry(config), signer_for(config)
    tags = approvals.version_tags(model_registry, version)
    in_force = approvals.in_force(lake, version)
    now = datetime.now(UTC)
    rows = []
    for approval in approvals.history(lake, version):
        status = approval_status(
            approval,
            signer.verify_key(),
            model_version=version,
            manifest_sha256=tags.get(registry.MANIFEST_SHA_TAG),
            environment=config.env,
            now=now,
            retired_at=tags.get(registry.RETIRED_TAG),
        )
        rows.append({**status.as_dict(), "in_force": in_force == approval.to_json()})
    if as_json:
        return json.dumps(rows, indent=2, sort_keys=True)
    if not rows:
        return f"{version}: no approval recorded"
    return "\n".join(
        f"{'*' if row['in_force'] else ' '} {row['approval']['approved_at']}  {row['approval']['approved_by']}  "
        f"until {row['approval']['expires_at']}  {row['state']}: {row['reason']}"
        for row in rows
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.approve", description=__doc__.split("\n")[0])
    parser.add_argument("version", help="model version, e.g. v3")
    parser.add_argument("--by", help="the approver: a named person who did not launch the version's training")
    parser.add_argument("--reason", help="why the version may be promoted")
    parser.add_argument(
        "--expires-hours",
        type=float,
        default=GATE.approval_valid_hours,
        help=f"hours it lasts (default {GATE.approval_valid_hours:g}, at most {GATE.approval_max_valid_hours:g})",
    )
    parser.add_argument("--auto", action="store_true", help="the labelled auto-approval (PLATFORM_ENV=local only)")
    parser.add_argument("--list", action="store_true", help="list the version's approvals instead")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if args.list and (args.by or args.reason or args.auto):
        parser.error("--list takes only the version")
    if not args.list:
        if args.auto and args.by:
            parser.error(f"--auto records the approver as {AUTO_APPROVER!r}: drop --by")
        if not args.auto and args.by is None:
            parser.error("--by NAME is required: the person who approves")
        if args.reason is None:
            parser.error("--reason TEXT is required")
    from mlflow.exceptions import MlflowException

    try:
        if args.list:
            print(list_approvals(args.version, as_json=args.json))
            return 0
        config = settings.load()
        approval = approvals.approve(
            default_lake(),
            default_registry(config),
            signer_for(config),
            args.version,
            approved_by=args.by or "",
            reason=args.reason,
            valid_hours=args.expires_hours,
            now=datetime.now(UTC),
            auto=args.auto,
        )
    except (ApprovalRefused, ValueError, settings.SettingsError, signing.SigningKeyError) as error:
        print(f"approve: refused: {error}", file=sys.stderr)
        return 2
    except MlflowException as error:
        print(f"approve: the model registry failed: {error.message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(approval.describe(), indent=2, sort_keys=True))
    else:
        described = approval.describe()
        print("\n".join(f"{name:<16}{value}" for name, value in described.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
