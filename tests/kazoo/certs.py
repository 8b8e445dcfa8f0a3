"""Test certificates made with the openssl commands docs/security.md gives.

    make_authority(dir, name)          -> (cert, key) of a new certificate authority
    make_signed(dir, name, authority)  -> (cert, key) signed by it, for localhost and 127.0.0.1

Each writes NAME.pem and NAME-key.pem (and a serial file) into dir. Keys are RSA 2048, PKCS#8,
unencrypted: what rustls, Python's ssl and ZooKeeper's PEM key store all read.
"""

import os
import subprocess

SUBJECT_ALT_NAMES = "DNS:localhost,IP:127.0.0.1"


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_authority(directory, name="ca"):
    """A self-signed certificate authority: (NAME.pem, NAME-key.pem)."""
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
        "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", f"{name}-key.pem", "-out", f"{name}.pem",
        cwd=directory,
    )
    return os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}-key.pem")


def make_signed(directory, name, authority):
    """A certificate for localhost and 127.0.0.1 signed by `authority` (cert, key paths), for
    servers and clients alike: (NAME.pem, NAME-key.pem)."""
    ca_cert, ca_key = authority
    ext = os.path.join(directory, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName={SUBJECT_ALT_NAMES}\nextendedKeyUsage=serverAuth,clientAuth\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
        "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
        cwd=directory,
    )
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", ca_cert, "-CAkey", ca_key,
        "-CAcreateserial", "-days", "825", "-extfile", ext, "-out", f"{name}.pem",
        cwd=directory,
    )
    return os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}-key.pem")
