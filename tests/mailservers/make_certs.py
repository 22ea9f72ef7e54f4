#!/usr/bin/env python3
"""Writes a throw-away test CA and two server certificates into OUTDIR (made by trustme):

  ca.pem                    the CA certificate to trust
  server.pem, server.key    valid for localhost and 127.0.0.1 (chain: leaf then CA)
  wrong.pem,  wrong.key     valid only for wrong.example (certificate-name-mismatch tests)
"""
import os
import sys

import trustme


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: make_certs.py OUTDIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    ca = trustme.CA(organization_name="Mailgate test CA")
    ca.cert_pem.write_to_path(os.path.join(out, "ca.pem"))
    for name, identities in (("server", ("localhost", "127.0.0.1")), ("wrong", ("wrong.example",))):
        leaf = ca.issue_cert(*identities, common_name=identities[0])
        leaf.private_key_pem.write_to_path(os.path.join(out, name + ".key"))
        with open(os.path.join(out, name + ".pem"), "wb") as f:
            for blob in leaf.cert_chain_pems:
                f.write(blob.bytes())
        os.chmod(os.path.join(out, name + ".key"), 0o644)
    print("OK", out)


if __name__ == "__main__":
    main()
