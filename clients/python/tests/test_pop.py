"""Holder keys and DPoP proofs, made and checked as mandate's Rust code does."""

from __future__ import annotations

import base64
import json
from typing import Any

import biscuit_auth
import pytest

from mandate_client.pop import (
    HolderKey,
    HolderSecret,
    InvalidJwk,
    InvalidProof,
    ProofChecker,
    ProofReplayCache,
    ProofsBusy,
    UseDpopNonce,
    check_proof,
    create_proof,
    normalize_url,
    token_hash,
)

URL = "https://crm.example.com/v1/tickets"
NOW = 1_800_000_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_the_vector_holders_have_the_thumbprints_the_vectors_bind(vectors: dict[str, Any]) -> None:
    orchestrator = HolderSecret.from_jwk(vectors["holders"]["orchestrator"])
    helper = HolderSecret.from_jwk(vectors["holders"]["helper"])
    bound = {case["name"]: case["calls"][0]["expect"]["verified"]["holder_key"]
             for case in vectors["cases"] if case["name"] in ("bound", "bound_p256")}
    # The mandate bound to the orchestrator's key, and the one bound to helper's, as Rust read them.
    assert orchestrator.thumbprint == bound["bound"]
    assert helper.thumbprint == bound["bound_p256"]
    assert orchestrator.to_jwk() == vectors["holders"]["orchestrator"]
    assert HolderKey.from_jwk(helper.public.to_jwk()) == helper.public


def test_the_schema_example_thumbprint_is_rfc_7638() -> None:
    # RFC 8037 appendix A.3: the thumbprint of its Ed25519 example key.
    key = HolderKey.from_jwk({"crv": "Ed25519", "kty": "OKP", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})
    assert key.thumbprint == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_a_proof_verifies_once_and_its_replay_is_refused(alg: str) -> None:
    holder = HolderSecret.generate(alg)  # type: ignore[arg-type]
    proof = create_proof(holder, "POST", URL + "?page=2", token="tok", now=NOW)
    checker = ProofChecker()
    checked = checker.check(proof, method="POST", url="HTTPS://CRM.example.com:443/v1/tickets",
                            ath=token_hash("tok"), holder_jkt=holder.thumbprint, now=NOW + 5)
    assert checked.jkt == holder.thumbprint and checked.htu == URL
    with pytest.raises(InvalidProof, match="already used"):
        checker.check(proof, method="POST", url=URL, ath=token_hash("tok"), holder_jkt=holder.thumbprint, now=NOW + 6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"holder_jkt": "x" * 43}, "other than the mandate's holder"),
        ({"method": "GET"}, "another method"),
        ({"url": "https://crm.example.com/v1/other"}, "another URL"),
        ({"now": NOW + 61}, "outside the accepted window"),
        ({"now": NOW - 31}, "outside the accepted window"),
        ({"ath": token_hash("another token")}, "ath"),
    ],
)
def test_a_proof_for_another_call_is_refused(change: dict[str, Any], message: str) -> None:
    holder = HolderSecret.generate()
    proof = create_proof(holder, "POST", URL, token="tok", now=NOW)
    expected: dict[str, Any] = dict(method="POST", url=URL, ath=token_hash("tok"), holder_jkt=holder.thumbprint, now=NOW)
    expected.update(change)
    with pytest.raises(InvalidProof, match=message) as refused:
        check_proof(proof, **expected)
    assert refused.value.code == "invalid_dpop_proof"


def _forged(header: dict[str, Any], claims: dict[str, Any], holder: HolderSecret) -> str:
    signing = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    return signing + "." + _b64(holder.sign(signing.encode()))


def test_proofs_with_private_keys_crit_or_mismatched_alg_are_refused() -> None:
    holder = HolderSecret.generate()
    claims = {"jti": "1", "htm": "POST", "htu": URL, "iat": NOW}
    header = {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": holder.public.to_jwk()}
    cases = {
        "private key": {**header, "jwk": holder.to_jwk()},
        "crit": {**header, "crit": ["exp"]},
        "alg must be": {**header, "alg": "none"},
        "typ must be": {**header, "typ": "JWT"},
        "does not match": {**header, "alg": "ES256"},
    }
    for message, bad in cases.items():
        with pytest.raises(InvalidProof, match=message):
            check_proof(_forged(bad, claims, holder), method="POST", url=URL, ath=None, holder_jkt=None, now=NOW)
    other = HolderSecret.generate()
    signed_by_other = _forged(header, claims, other)
    with pytest.raises(InvalidProof, match="signature"):
        check_proof(signed_by_other, method="POST", url=URL, ath=None, holder_jkt=None, now=NOW)
    with pytest.raises(InvalidProof, match="4096"):
        check_proof("a" * 4097, method="POST", url=URL, ath=None, holder_jkt=None, now=NOW)


def test_weak_ed25519_keys_and_private_jwks_are_not_holder_keys() -> None:
    identity = _b64(bytes([1]) + bytes(31))
    with pytest.raises(InvalidJwk, match="weak"):
        HolderKey.from_jwk({"kty": "OKP", "crv": "Ed25519", "x": identity})
    with pytest.raises(InvalidJwk, match="private"):
        HolderKey.from_jwk(HolderSecret.generate().to_jwk())
    with pytest.raises(InvalidJwk, match="P-256"):
        HolderKey.from_jwk({"kty": "EC", "crv": "P-256", "x": _b64(bytes(32)), "y": _b64(bytes(32))})


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_the_biscuit_key_is_the_same_key_pair(alg: str) -> None:
    holder = HolderSecret.generate(alg)  # type: ignore[arg-type]
    public = biscuit_auth.KeyPair.from_private_key(holder.biscuit_private_key()).public_key
    raw = bytes(public.to_bytes())
    algorithm = 0 if alg == "EdDSA" else 1
    assert HolderKey.from_biscuit_bytes(algorithm, raw) == holder.public


def test_a_full_replay_cache_refuses_rather_than_forgets() -> None:
    holder = HolderSecret.generate()
    checker = ProofChecker(replay_capacity=2)
    for _ in range(2):
        checker.check(create_proof(holder, "GET", URL, now=NOW), method="GET", url=URL, ath=None, holder_jkt=None, now=NOW)
    with pytest.raises(ProofsBusy):
        checker.check(create_proof(holder, "GET", URL, now=NOW), method="GET", url=URL, ath=None, holder_jkt=None, now=NOW)
    # Once the first proofs leave the window, there is room again.
    checker.check(create_proof(holder, "GET", URL, now=NOW + 62), method="GET", url=URL, ath=None, holder_jkt=None, now=NOW + 62)
    assert isinstance(checker.replays, ProofReplayCache) and len(checker.replays) == 1


def test_required_nonces_are_asked_for_and_accepted_in_their_period() -> None:
    holder = HolderSecret.generate()
    checker = ProofChecker(require_nonce=True, nonce_key=b"k" * 32)
    with pytest.raises(UseDpopNonce) as asked:
        checker.check(create_proof(holder, "GET", URL, now=NOW), method="GET", url=URL, ath=None, holder_jkt=None, now=NOW)
    assert asked.value.code == "use_dpop_nonce"
    nonce = checker.nonce(NOW)
    replica = ProofChecker(require_nonce=True, nonce_key=b"k" * 32)
    replica.check(create_proof(holder, "GET", URL, nonce=nonce, now=NOW), method="GET", url=URL, ath=None, holder_jkt=None, now=NOW + 1)
    assert not checker.nonce_current(nonce, NOW + 600)


def test_urls_normalize_as_rfc_3986_section_6() -> None:
    assert normalize_url("HTTPS://Crm.Example.com:443/a/B?q=1#f") == "https://crm.example.com/a/B"
    assert normalize_url("http://h:8080") == "http://h:8080/"
    assert normalize_url("ftp://h/") is None
    assert normalize_url("https://user@h/") is None
