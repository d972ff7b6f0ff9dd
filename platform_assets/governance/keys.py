"""Create an Ed25519 key pair for signing model manifests.

    python -m platform_assets.governance.keys create --out-dir DIR [--force]

writes ``DIR/signing_key.pem`` (private, mode 0600) and ``DIR/verify_key.pem`` (public). Point
``PLATFORM_SIGNING_KEY_FILE`` at the first where models are signed (Dagster) and
``PLATFORM_VERIFY_KEY_FILE`` at the second wherever they are verified (checks, service, audit).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from platform_assets.core import signing


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m platform_assets.governance.keys", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key pair (PEM)")
    create.add_argument("--out-dir", required=True, help="folder for signing_key.pem and verify_key.pem")
    create.add_argument("--force", action="store_true", help="replace an existing key pair")
    args = parser.parse_args(argv)
    try:
        private_path, public_path = signing.write_key_pair(args.out_dir, overwrite=args.force)
    except (FileExistsError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    key = signing.load_public_key_file(public_path)
    print(f"private key: {private_path} (mode 0600)  -> PLATFORM_SIGNING_KEY_FILE")
    print(f"public key:  {public_path}  -> PLATFORM_VERIFY_KEY_FILE")
    print(f"key id:      {signing.key_id(key)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
