#!/usr/bin/env python3
"""Writes a throw-away test CA and two server certificates into OUTDIR (made by trustme):

  ca.pem                    the CA certificate to trust
  server.pem, server.key    valid for localhost and 127.0.0.1 (chain: leaf then CA), and
                            for the names given with --names
  wrong.pem,  wrong.key     valid only for wrong.example (certificate-name-mismatch tests)

--names a,b,c adds names (DNS names, `*.` wildcards, IP addresses) to server.pem, e.g.
`--names example.test,autoconfig.example.test` for https_server.py serving autoconfig
fixtures; without it the outputs are as they always were.
"""
import argparse
import os

import trustme


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir", metavar="OUTDIR")
    p.add_argument("--names", default="", metavar="A,B,C",
                   help="extra names for server.pem, comma-separated")
    args = p.parse_args()
    out = args.outdir
    extra = tuple(n.strip() for n in args.names.split(",") if n.strip())
    os.makedirs(out, exist_ok=True)
    ca = trustme.CA(organization_name="Mailgate test CA")
    ca.cert_pem.write_to_path(os.path.join(out, "ca.pem"))
    for name, identities in (("server", ("localhost", "127.0.0.1") + extra), ("wrong", ("wrong.example",))):
        leaf = ca.issue_cert(*identities, common_name=identities[0])
        leaf.private_key_pem.write_to_path(os.path.join(out, name + ".key"))
        with open(os.path.join(out, name + ".pem"), "wb") as f:
            for blob in leaf.cert_chain_pems:
                f.write(blob.bytes())
        os.chmod(os.path.join(out, name + ".key"), 0o644)
    print("OK", out)


if __name__ == "__main__":
    main()
