#!/usr/bin/env python3
"""Writes a throw-away RSA key pair for JWT-bearer tests into OUTDIR (cryptography package):

  jwt_private.pem   PKCS#8, unencrypted: what a test signs assertions with (like a Google
                    service account's key); trusted by nothing but the test's oauth_server.py
  jwt_public.pem    SubjectPublicKeyInfo: what oauth_server.py checks assertions with
                    (a client's `jwt_public_key`)
"""
import argparse
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir", metavar="OUTDIR")
    out = p.parse_args().outdir
    os.makedirs(out, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(os.path.join(out, "jwt_private.pem"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(os.path.join(out, "jwt_public.pem"), "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    print("OK", out)


if __name__ == "__main__":
    main()
