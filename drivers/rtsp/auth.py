"""RTSP authentication: Basic (RFC 7617) and Digest (RFC 2617 / 7616, MD5 or SHA-256,
qop auth or none), from the camera's WWW-Authenticate challenges. Digest is preferred:
Basic sends the password in the clear on every request."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass

from gateway.errors import PayloadRejected

_ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # "digest" or "basic"
    params: dict[str, str]


def parse_challenge(value: str) -> Challenge:
    scheme, _, rest = value.strip().partition(" ")
    if not scheme.isalpha():
        raise PayloadRejected("auth_challenge", value[:60])
    return Challenge(scheme.lower(), _params(rest))


def _params(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " ,\t":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0:
            raise PayloadRejected("auth_challenge", text[i : i + 40])
        key = text[i:eq].strip().lower()
        if not key or not all(c.isalnum() or c in "-_" for c in key):
            raise PayloadRejected("auth_challenge", text[i : i + 40])
        i = eq + 1
        if i < n and text[i] == '"':
            i += 1
            value: list[str] = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
            if i >= n:
                raise PayloadRejected("auth_challenge", "unterminated quoted value")
            i += 1
            out[key] = "".join(value)
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            out[key] = text[i:end].strip()
            i = end
    return out


def pick(challenges: tuple[str, ...]) -> Challenge:
    """The strongest challenge we can answer: Digest with a known algorithm, else Basic."""
    parsed = [parse_challenge(c) for c in challenges]
    for c in parsed:
        if c.scheme == "digest" and c.params.get("algorithm", "MD5").upper() in _ALGORITHMS:
            if "realm" not in c.params or "nonce" not in c.params:
                raise PayloadRejected("auth_challenge", "digest without realm or nonce")
            return c
    for c in parsed:
        if c.scheme == "basic":
            return c
    raise PayloadRejected("auth_scheme", ", ".join(c.scheme for c in parsed)[:60] or "none")


def basic(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def digest(challenge: Challenge, username: str, password: str, method: str, uri: str,
           nc: int = 1, cnonce: str | None = None) -> str:
    p = challenge.params
    algorithm = p.get("algorithm", "MD5").upper()
    h = _ALGORITHMS[algorithm]

    def hx(text: str) -> str:
        return h(text.encode("utf-8")).hexdigest()

    realm, nonce = p["realm"], p["nonce"]
    ha1 = hx(f"{username}:{realm}:{password}")
    ha2 = hx(f"{method}:{uri}")
    qops = [q.strip() for q in p.get("qop", "").split(",") if q.strip()]
    fields = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"',
              f'uri="{uri}"']
    if "auth" in qops:
        cn = cnonce or secrets.token_hex(8)
        count = f"{nc:08x}"
        response = hx(f"{ha1}:{nonce}:{count}:{cn}:auth:{ha2}")
        fields += [f'response="{response}"', "qop=auth", f"nc={count}", f'cnonce="{cn}"']
    else:
        fields.append(f'response="{hx(f"{ha1}:{nonce}:{ha2}")}"')
    if "algorithm" in p:
        fields.append(f"algorithm={algorithm}")
    if "opaque" in p:
        fields.append(f'opaque="{p["opaque"]}"')
    return "Digest " + ", ".join(fields)


def expected_digest(params: dict[str, str], password: str, method: str, realm: str,
                    algorithm: str = "MD5") -> str:
    """What a correct `response=` is for the fields a client sent (the server's check)."""
    h = _ALGORITHMS[algorithm]

    def hx(text: str) -> str:
        return h(text.encode("utf-8")).hexdigest()

    ha1 = hx(f"{params.get('username', '')}:{realm}:{password}")
    ha2 = hx(f"{method}:{params.get('uri', '')}")
    if params.get("qop") == "auth":
        return hx(f"{ha1}:{params.get('nonce', '')}:{params.get('nc', '')}:"
                  f"{params.get('cnonce', '')}:auth:{ha2}")
    return hx(f"{ha1}:{params.get('nonce', '')}:{ha2}")
