"""API keys: creation, listing, revocation, authentication, and how they are kept on disk."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest

from agentwatch.core.api_keys import SCOPES, KeyStore, parse_token
from agentwatch.core.errors import AuthError, ConfigError
from agentwatch.core.home import Home


def test_create_returns_a_token_that_authenticates(home: Home) -> None:
    """A created key's token has the aw_<id>_<secret> form and authenticates as that key."""
    store = KeyStore(home)
    key, token = store.create("ingest", name="router agent")
    assert re.fullmatch(r"aw_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", token)
    assert token.startswith(f"aw_{key.id}_")
    assert key.scope == "ingest" and key.name == "router agent" and key.revoked_at is None
    found = store.authenticate(token)
    assert found is not None and found.id == key.id and found.scope == "ingest"


def test_wrong_unknown_and_malformed_tokens_are_refused(home: Home) -> None:
    """A wrong secret, an unknown id, or a malformed token all authenticate as None."""
    store = KeyStore(home)
    token = store.create("read")[1]
    key_id, secret = parse_token(token)  # type: ignore[misc]
    wrong_secret = f"aw_{key_id}_{'A' * 43}"
    unknown_id = f"aw_{'0' * 8 if key_id != '0' * 8 else '1' * 8}_{secret}"
    for candidate in (wrong_secret, unknown_id, "", "aw_", token[:-1], "Bearer " + token, token + "x"):
        assert store.authenticate(candidate) is None, candidate


def test_list_shows_every_key_oldest_first(home: Home) -> None:
    """list() returns all keys, revoked ones included, with their scopes and names."""
    store = KeyStore(home)
    created = [store.create(scope, name=f"k-{scope}")[0] for scope in SCOPES]
    store.revoke(created[1].id)
    listed = KeyStore(home).list()
    assert [k.id for k in listed] == [k.id for k in created]
    assert [k.scope for k in listed] == list(SCOPES)
    assert [k.revoked_at is not None for k in listed] == [False, True, False]


def test_revoke_takes_effect_in_another_store_instance(home: Home) -> None:
    """A key revoked through one KeyStore (the CLI) is refused by another that already loaded it (the server)."""
    server_side = KeyStore(home)
    key, token = KeyStore(home).create("ingest")
    assert server_side.authenticate(token) is not None
    revoked = KeyStore(home).revoke(key.id)
    assert revoked.revoked_at is not None
    assert server_side.authenticate(token) is None
    assert KeyStore(home).revoke(key.id).revoked_at == revoked.revoked_at  # revoking again changes nothing


def test_revoke_unknown_id_names_it(home: Home) -> None:
    """Revoking an id that does not exist raises AuthError naming the id."""
    with pytest.raises(AuthError, match="deadbeef"):
        KeyStore(home).revoke("deadbeef")


def test_bad_scope_lists_the_allowed_scopes(home: Home) -> None:
    """An unknown scope is refused with a message listing ingest, read and admin."""
    with pytest.raises(ConfigError) as caught:
        KeyStore(home).create("write")
    message = str(caught.value)
    assert "'write'" in message
    assert all(scope in message for scope in SCOPES)


def test_admin_implies_ingest_and_read(home: Home) -> None:
    """An admin key allows every scope; ingest and read keys allow only their own."""
    store = KeyStore(home)
    admin = store.create("admin")[0]
    ingest = store.create("ingest")[0]
    read = store.create("read")[0]
    assert admin.allows("ingest") and admin.allows("read") and admin.allows("admin")
    assert ingest.allows("ingest") and not ingest.allows("read") and not ingest.allows("admin")
    assert read.allows("read") and not read.allows("ingest")


def test_secret_is_not_stored_in_clear_and_file_is_private(home: Home) -> None:
    """keys.json holds only a SHA-256 of each secret, is mode 0600, and no temp file is left behind."""
    store = KeyStore(home)
    tokens = [store.create(scope)[1] for scope in SCOPES]
    text = home.keys_file.read_text()
    for token in tokens:
        secret = parse_token(token)[1]  # type: ignore[index]
        assert secret not in text
        assert token not in text
    document = json.loads(text)
    assert all(re.fullmatch(r"[0-9a-f]{64}", record["secret_sha256"]) for record in document["keys"])
    assert stat.S_IMODE(os.stat(home.keys_file).st_mode) == 0o600
    assert [p.name for p in home.keys_file.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_repr_never_shows_the_secret_or_its_hash(home: Home) -> None:
    """An ApiKey's repr and str carry neither the secret nor its hash."""
    store = KeyStore(home)
    key, token = store.create("ingest")
    secret = parse_token(token)[1]  # type: ignore[index]
    digest = json.loads(home.keys_file.read_text())["keys"][0]["secret_sha256"]
    for shown in (repr(key), str(key), repr(store.authenticate(token)), repr(store.list())):
        assert secret not in shown and digest not in shown


def test_damaged_key_file_fails_closed(home: Home) -> None:
    """A key file that is not valid JSON makes list() raise ConfigError and authenticate() refuse every token."""
    store = KeyStore(home)
    token = store.create("ingest")[1]
    home.keys_file.write_text("{not json")
    with pytest.raises(ConfigError, match="damaged"):
        store.list()
    assert KeyStore(home).authenticate(token) is None
