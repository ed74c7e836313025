"""What a production SECRET_KEY must be, and the fixed key used outside production.

Flask signs its session cookie, and itsdangerous its tokens, with an HMAC keyed by
SECRET_KEY: whoever holds one signed cookie can test guesses offline, as fast as they can
hash, and tools for it ship word lists of the usual keys (flask-unsign). So production
refuses a key that is guessable by its shape, with a reason that never quotes it:

- a placeholder: ignoring case, it is one of `PLACEHOLDER_SECRETS`, contains one of those
  of six characters or more (`changeme` x 4, `my-secret-…`), or is mostly one (difflib's
  similarity ratio of at least `SIMILAR`: the development key with a few characters
  changed or removed);
- shorter than `MIN_PRODUCTION_SECRET_LENGTH` characters;
- repetitive: fewer than `MIN_VARIETY` different three-character sequences, so a run of one
  character (`a` x 32) or a unit of under 16 characters repeated fails however long it is.

A key from `secrets.token_hex(32)` always passes: its digits 0-9a-f spell no placeholder,
and few of its 62 sequences ever repeat. One from `secrets.token_urlsafe(32)` passes unless
it spells a placeholder word by chance (about one key in 27 million, nearly all `secret`);
running the command again gives another. Shapes a human picks that are none of these
(a keyboard walk, a quotation) pass: the rule refuses what is certainly weak, and the
generated key is the way to a strong one.
"""

from __future__ import annotations

from difflib import get_close_matches

# A fixed key, so sessions and signed values survive restarts and agree across workers in
# development; a per-process random key would silently break both. Refused in production.
DEVELOPMENT_SECRET_KEY = "development-only-secret-key-never-use-in-production"  # noqa: S105
# The usual guesses, the examples in the deploy files (deploy/kubernetes/secret.yaml's
# change-me) and the development key.
PLACEHOLDER_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "dev",
        "development",
        "secret",
        "secret-key",
        "secret_key",
        "password",
        "test",
        "default",
        "insecure",
        DEVELOPMENT_SECRET_KEY,
    }
)
# Looked for inside a key from six characters up: a shorter one turns up in random keys by
# chance (`dev` in about one token_urlsafe(32) key in 800).
_PLACEHOLDER_WORDS = tuple(word for word in PLACEHOLDER_SECRETS if len(word) >= 6)
# Similarity (difflib's ratio) from which a key counts as a placeholder changed a little;
# a random key scores under half against every placeholder. The standard library's measure
# rather than a hand-written edit distance, and no new dependency: a password-strength
# estimator (zxcvbn) models what people type, not near-copies of these placeholders.
SIMILAR = 0.75
# itsdangerous signs with HMAC-SHA1 by default; 32 random bytes (64 hex digits) is the
# usual floor, and short keys are guessable offline from any signed cookie.
MIN_PRODUCTION_SECRET_LENGTH = 32
# Different three-character sequences a key needs: a unit repeated has no more than its own
# length, a run one. 32 random hex digits, the shortest random key that passes, have 30 and
# fewer than 25 about once in a million keys; fewer than 16, never in practice.
MIN_VARIETY = 16
GENERATE_SECRET = "python -c 'import secrets; print(secrets.token_hex(32))'"  # noqa: S105


def production_secret_problem(key: str) -> str | None:
    """Why `key` may not sign in production, in words that never quote it; None if it may."""
    generate = f"generate one with `{GENERATE_SECRET}`"
    if not key.strip():
        return f"is required when APP_ENV=production; {generate}"
    lowered = key.lower()
    if (
        lowered in PLACEHOLDER_SECRETS
        or any(word in lowered for word in _PLACEHOLDER_WORDS)
        or get_close_matches(lowered, PLACEHOLDER_SECRETS, n=1, cutoff=SIMILAR)
    ):
        return f"is a placeholder value, or contains or is close to one; {generate}"
    if len(key) < MIN_PRODUCTION_SECRET_LENGTH:
        return f"must be at least {MIN_PRODUCTION_SECRET_LENGTH} characters when APP_ENV=production"
    if len({key[at : at + 3] for at in range(len(key) - 2)}) < MIN_VARIETY:
        return (
            "is too repetitive (a run of one character, or a short unit repeated): it has "
            f"under {MIN_VARIETY} different three-character sequences; {generate}"
        )
    return None
