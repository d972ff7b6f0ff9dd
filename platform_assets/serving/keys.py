"""API keys of the service: ``python -m platform_assets.serving.keys create|list|revoke``.

``create --role predict --file keys.json`` prints the key once on stdout; only its sha256 is written to the
file. ``list`` shows key ids, roles, dates and notes (never a hash). ``revoke KEY_ID`` removes a key. A
running service picks up each change within a second: rotate by creating the new key, moving clients,
then revoking the old one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from platform_assets.core.api_keys import ROLES, KeyFileError, create_key, parse_keys, revoke_key
from platform_assets.serving.settings import InvalidSettings, ServingSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.serving.keys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and store its hash")
    create.add_argument("--role", action="append", choices=ROLES, required=True, help="repeat for several roles")
    create.add_argument("--note", default="", help="free text stored with the hash, e.g. the key's owner")
    listing = commands.add_parser("list", help="the stored keys (ids, roles, dates, notes)")
    revoke = commands.add_parser("revoke", help="remove a key; the service refuses it within a second")
    revoke.add_argument("key_id", help="the id `list` shows")
    for command in (create, listing, revoke):
        command.add_argument(
            "--file", type=Path, help="key file (default: $CREDIT_RISK_API_KEYS_FILE, the service's key file)"
        )
    args = parser.parse_args(argv)
    try:
        file = args.file if args.file is not None else ServingSettings.from_environment().api_keys_file
    except InvalidSettings as exc:
        parser.error(str(exc))
    if file is None:
        parser.error("--file is required when CREDIT_RISK_API_KEYS_FILE is not set")
    try:
        if args.command == "create":
            key, record = create_key(file, sorted(set(args.role)), args.note)
            print(key)
            print(f"stored key {record.key_id} with roles {list(record.roles)} in {file}", file=sys.stderr)
        elif args.command == "revoke":
            record = revoke_key(file, args.key_id)
            print(f"revoked key {record.key_id} (roles {list(record.roles)}) in {file}", file=sys.stderr)
        else:
            for record in parse_keys(file.read_text(), str(file)) if file.exists() else []:
                print(f"{record.key_id}  {','.join(record.roles):<24} {record.created_at}  {record.note}")
    except (KeyFileError, KeyError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
