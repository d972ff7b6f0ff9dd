"""Create an API key: ``python -m platform_assets.serving.keys create --role predict --file keys.json``.

The key is printed once on stdout; only its sha256 is written to the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from platform_assets.core.api_keys import ROLES, KeyFileError, create_key
from platform_assets.serving.settings import InvalidSettings, ServingSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.serving.keys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and store its hash")
    create.add_argument("--role", action="append", choices=ROLES, required=True, help="repeat for several roles")
    create.add_argument(
        "--file",
        type=Path,
        help="key file (default: $CREDIT_RISK_API_KEYS_FILE, the service's key file)",
    )
    create.add_argument("--note", default="", help="free text stored with the hash, e.g. the key's owner")
    args = parser.parse_args(argv)
    try:
        file = args.file if args.file is not None else ServingSettings.from_environment().api_keys_file
    except InvalidSettings as exc:
        parser.error(str(exc))
    if file is None:
        parser.error("--file is required when CREDIT_RISK_API_KEYS_FILE is not set")
    try:
        key, record = create_key(file, sorted(set(args.role)), args.note)
    except (KeyFileError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(key)
    print(f"stored key {record.key_id} with roles {list(record.roles)} in {file}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
