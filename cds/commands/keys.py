"""`cds keys generate --alg ES384 --out DIR`: a key pair for SMART Backend Services registration.

Writes `DIR/backend-key.pem` (the private key, mode 0600, never printed) and `DIR/jwks.json` (its
public half), then prints the JWK Set to register with the EHR and the settings block to paste.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds.smart.backend import BackendClient, thumbprint


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "keys",
        help="key pairs for SMART Backend Services (cds keys generate)",
        description="Key pairs the service signs its client assertions with (SMART Backend Services).",
    )
    sub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    g = sub.add_parser("generate", help="write a new key pair and print its JWKS and settings block")
    g.add_argument(
        "--alg", choices=("ES384", "RS384"), default="ES384", help="signing algorithm (default ES384)"
    )
    g.add_argument("--out", required=True, type=Path, help="directory for backend-key.pem and jwks.json")
    g.add_argument("--kid", help="key id (default: the key's RFC 7638 thumbprint)")
    g.add_argument("--client-id", default="cds-service", help="client id for the printed settings block")
    g.add_argument("--force", action="store_true", help="overwrite an existing key")
    g.set_defaults(func=generate)


def generate(args: argparse.Namespace) -> int:
    out: Path = args.out
    key_path, jwks_path = out / "backend-key.pem", out / "jwks.json"
    if key_path.exists() and not args.force:
        print(f"cds keys: {key_path} exists; use --force to replace it", file=sys.stderr)
        return 2
    key = (
        ec.generate_private_key(ec.SECP384R1())
        if args.alg == "ES384"
        else rsa.generate_private_key(65537, 3072)
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.chmod(key_path, 0o600)
    client = BackendClient(client_id=args.client_id, private_key=key, alg=args.alg)
    kid = args.kid or thumbprint(client.public_jwk())
    client = BackendClient(client_id=args.client_id, private_key=key, alg=args.alg, kid=kid)
    jwks = {"keys": [client.public_jwk()]}
    jwks_path.write_text(json.dumps(jwks, indent=2) + "\n", encoding="utf-8")
    print(f"# wrote {key_path} (private, 0600) and {jwks_path} (public)")
    print("# register this JWK Set with the EHR (or its URL: <public_base_url>/.well-known/jwks.json):")
    print(json.dumps(jwks, indent=2))
    print("# and add to the [[trusted_clients]] entry of that EHR:")
    print(
        "[trusted_clients.backend]\n"
        f'client_id = "{args.client_id}"\n'
        f'private_key_file = "{key_path.resolve()}"\n'
        f'kid = "{kid}"\n'
        '# token_url = "https://ehr.example.org/oauth2/token"   # else from smart-configuration'
    )
    return 0
