"""Proof of possession from Python, by docs/token-schema.md alone: holder keys as JWKs, their
RFC 7638 thumbprints, DPoP proofs (RFC 9449) made and checked with `cryptography`, and a bound
mandate's current holder read with biscuit-python.

  dpop_interop.py keygen ALG KEY_FILE                      > public JWK   (ALG: EdDSA or ES256)
  dpop_interop.py proof KEY_FILE METHOD URL NOW_RFC3339    < token > proof
  dpop_interop.py check KEYS_JSON METHOD URL NOW_RFC3339   < {"token": …, "proof": …} > result.json
"""

import base64
import datetime
import hashlib
import json
import sys
import uuid

import biscuit_auth as biscuit
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_jwk(key):
    """The required members of a public key's JWK."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"crv": "Ed25519", "kty": "OKP", "x": b64(raw)}
    numbers = key.public_numbers()
    return {"crv": "P-256", "kty": "EC", "x": b64(numbers.x.to_bytes(32, "big")),
            "y": b64(numbers.y.to_bytes(32, "big"))}


def thumbprint(jwk):
    """RFC 7638: the required members, sorted, no whitespace, SHA-256, base64url."""
    members = {k: jwk[k] for k in (("crv", "kty", "x") if jwk["kty"] == "OKP" else ("crv", "kty", "x", "y"))}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return b64(hashlib.sha256(canonical.encode()).digest())


def key_from_jwk(jwk):
    if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(unb64(jwk["x"])), "EdDSA"
    if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(unb64(jwk["x"]), "big"), int.from_bytes(unb64(jwk["y"]), "big"), ec.SECP256R1())
        return numbers.public_key(), "ES256"
    raise ValueError("not an Ed25519 or P-256 JWK")


def keygen(alg, path):
    if alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
        d = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                  serialization.NoEncryption())
    else:
        private = ec.generate_private_key(ec.SECP256R1())
        d = private.private_numbers().private_value.to_bytes(32, "big")
    jwk = public_jwk(private.public_key())
    with open(path, "w") as f:
        json.dump(dict(jwk, d=b64(d)), f)
    return jwk


def private_key(jwk):
    d = unb64(jwk["d"])
    if jwk["kty"] == "OKP":
        return ed25519.Ed25519PrivateKey.from_private_bytes(d), "EdDSA"
    return ec.derive_private_key(int.from_bytes(d, "big"), ec.SECP256R1()), "ES256"


def proof(path, method, url, now, token):
    with open(path) as f:
        jwk = json.load(f)
    key, alg = private_key(jwk)
    header = {"typ": "dpop+jwt", "alg": alg, "jwk": public_jwk(key.public_key())}
    claims = {"jti": str(uuid.uuid4()), "htm": method, "htu": url, "iat": int(now.timestamp()),
              "ath": b64(hashlib.sha256(token.encode()).digest())}
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    if alg == "EdDSA":
        signature = key.sign(signing_input.encode())
    else:
        r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return signing_input + "." + b64(signature)


def root_keys(path):
    with open(path) as f:
        document = json.load(f)
    keys = {k["kid"]: biscuit.PublicKey.from_bytes(bytes.fromhex(k["public_key"].split("/", 1)[1]),
                                                   biscuit.Algorithm.Ed25519)
            for k in document["keys"]}
    return lambda kid: keys[kid]


def signer_thumbprint(public_key):
    """The thumbprint of the key that signed a third-party block."""
    raw = bytes(public_key.to_bytes())
    if len(raw) == 32:
        return thumbprint({"crv": "Ed25519", "kty": "OKP", "x": b64(raw)})
    point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    return thumbprint(public_jwk(point))


def current_holder(token):
    """The authority's `holder_key`, moved by each third-party `holder_key` block the current
    holder signed (a block signed by anyone else forges the binding)."""
    holder = None
    for index in range(token.block_count()):
        source = token.block_source(index)
        stated = [line for line in source.splitlines() if line.startswith("holder_key(")]
        if not stated:
            continue
        named = stated[0].split('"')[1]
        if index > 0:
            signer = token.block_external_key(index)
            if signer is None or holder is None or signer_thumbprint(signer) != holder:
                raise ValueError("forged binding")
        holder = named
    return holder


def check(keys_path, method, url, now, presented):
    """RFC 9449 section 4.3, as the schema doc lists it, then the mandate's own policy."""
    token_text, jwt = presented["token"], presented["proof"]
    header_b64, claims_b64, signature_b64 = jwt.split(".")
    header, claims = json.loads(unb64(header_b64)), json.loads(unb64(claims_b64))
    if header.get("typ") != "dpop+jwt" or "crit" in header or "d" in header.get("jwk", {}):
        return {"valid": False, "error": "header"}
    key, alg = key_from_jwk(header["jwk"])
    if alg != header.get("alg"):
        return {"valid": False, "error": "alg"}
    signature = unb64(signature_b64)
    try:
        if alg == "EdDSA":
            key.verify(signature, (header_b64 + "." + claims_b64).encode())
        else:
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
            key.verify(der, (header_b64 + "." + claims_b64).encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return {"valid": False, "error": "signature"}
    token = biscuit.Biscuit.from_base64(token_text, root_keys(keys_path))
    jkt = thumbprint(header["jwk"])
    try:
        holder = current_holder(token)
    except ValueError as error:
        return {"valid": False, "error": str(error)}
    if jkt != holder:
        return {"valid": False, "error": "key"}
    if claims.get("htm") != method or claims.get("htu", "").split("?")[0] != url:
        return {"valid": False, "error": "method or url"}
    if not now.timestamp() - 60 <= claims.get("iat", 0) <= now.timestamp() + 30:
        return {"valid": False, "error": "iat"}
    if claims.get("ath") != b64(hashlib.sha256(token_text.encode()).digest()):
        return {"valid": False, "error": "ath"}
    builder = biscuit.AuthorizerBuilder(
        "time({now}); tool(\"crm\"); operation(\"read\"); holder_proof({jkt});\n"
        "allow if mandate_schema(1), right(\"crm\", \"read\");",
        {"now": now, "jkt": jkt},
    )
    # Run limits no load on a test machine reaches: the verdict is the Datalog's alone.
    limits = builder.limits()
    limits.max_time = datetime.timedelta(seconds=1)
    builder.set_limits(limits)
    authorizer = builder.build(token)
    try:
        authorizer.authorize()
    except biscuit.AuthorizationError as error:
        return {"valid": True, "jkt": jkt, "allowed": False, "error": str(error)}
    return {"valid": True, "jkt": jkt, "allowed": True}


def main():
    command = sys.argv[1]
    if command == "keygen":
        print(json.dumps(keygen(sys.argv[2], sys.argv[3])))
        return
    now = datetime.datetime.fromisoformat(sys.argv[5].replace("Z", "+00:00"))
    stdin = sys.stdin.read().strip()
    if command == "proof":
        print(proof(sys.argv[2], sys.argv[3], sys.argv[4], now, stdin))
    elif command == "check":
        print(json.dumps(check(sys.argv[2], sys.argv[3], sys.argv[4], now, json.loads(stdin))))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
