#!/usr/bin/env python3
"""Check flock-crypto's output with Python `cryptography`, the original client's library.

Usage: python3 cross_check.py DIR   (DIR written by tests/cross_check.rs)
"""
import base64
import hashlib
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

d = Path(sys.argv[1])
priv = serialization.load_pem_private_key((d / "private.pem").read_bytes(), password=None)
enc = serialization.load_pem_private_key(
    (d / "private_encrypted.pem").read_bytes(), password=b"flock-secret")
pub = priv.public_key()
spki_pem = pub.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)
assert enc.private_numbers() == priv.private_numbers(), "encrypted key differs"
assert (d / "public.pem").read_bytes() == spki_pem, "SPKI PEM differs from OpenSSL's"
assert priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()) == (d / "private.pem").read_bytes()

oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)
n = {"sealed": 0, "signature": 0}
for line in (d / "artifacts.txt").read_text().splitlines():
    kind, *rest = line.split(" ")
    if kind == "public_b64":
        assert rest[0] == base64.b64encode(spki_pem).decode(), "pubkey_b64 differs"
    elif kind == "fingerprint":
        der = pub.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
        assert rest[0] == hashlib.sha256(der).hexdigest()
    elif kind == "sealed":
        text, raw = base64.b64decode(rest[0]), base64.b64decode(rest[1])
        klen = int.from_bytes(raw[:2], "big")
        assert klen == 256
        aes_key = priv.decrypt(raw[2:2 + klen], oaep)
        nonce, ct = raw[2 + klen:14 + klen], raw[14 + klen:]
        assert AESGCM(aes_key).decrypt(nonce, ct, None) == text
        n[kind] += 1
    elif kind == "signature":
        text, sig = base64.b64decode(rest[0]), base64.b64decode(rest[1])
        pub.verify(sig, text, pss, hashes.SHA256())
        n[kind] += 1
print(f"ok: keys, pubkey_b64, fingerprint, {n['sealed']} payloads, {n['signature']} signatures")
