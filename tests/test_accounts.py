"""Accounts and tokens: logout, password change, the rules for choosing a password, rehash on login,
and the SECRET_KEY length check (SPEC "Accounts and tokens")."""

from __future__ import annotations

import subprocess
import sys

import pytest

import referral.security
from referral.clock import utcnow
from referral.config import ConfigError, load_settings
from referral.db.tables import user as user_table
from referral.services import passwords
from tests.factories import Factory, User, login, random_email, token_of
from tests.live import LiveClient, serve
from tests.problems import assert_problem
from tests.support import server_env

NEW_PASSWORD = "a-new-and-better-passphrase"


def password_change(current: str, new: str) -> dict[str, str]:
    return {"current_password": current, "new_password": new}


def change_password(api: LiveClient, token: str, current: str, new: str):
    return api.post("/user/password", json=password_change(current, new), headers={"authorization": token})


def list_referrals(api: LiveClient, user: User, token: str):
    return api.get("/referals/list", params={"user_id": user.id}, headers={"authorization": token})


# Every route that needs a token: (method, path, request arguments for the given user).
PROTECTED = {
    "update_code": lambda user: ("POST", "/refer/update_code", {"json": {"day": 7}}),
    "delete": lambda user: ("DELETE", "/refer/delete", {}),
    "list": lambda user: ("GET", "/referals/list", {"params": {"user_id": user.id}}),
    "logout": lambda user: ("POST", "/user/logout", {}),
    "password": lambda user: ("POST", "/user/password", {"json": password_change(user.password, NEW_PASSWORD)}),
}


def call(api: LiveClient, route: str, user: User, token: str):
    method, path, arguments = PROTECTED[route](user)
    return api.request(method, path, headers={"authorization": token}, **arguments)


def assert_revoked(answer) -> None:
    assert_problem(answer, 401)
    assert answer.headers["www-authenticate"].startswith("Bearer")


# ------------------------------------------------------------------------------------------- #
# Logout
# ------------------------------------------------------------------------------------------- #


class TestLogout:
    @pytest.mark.parametrize("route", PROTECTED)
    def test_the_old_token_is_401_on_every_protected_route(self, api, make, route):
        user = make.user()
        make.code(user)  # so that delete would otherwise succeed
        assert api.post("/user/logout", headers=user.auth).status_code == 204
        assert_revoked(call(api, route, user, user.token))

    def test_every_token_issued_until_then_ends(self, api, make):
        user = make.user()
        other = token_of(api, user.email, user.password)
        assert api.post("/user/logout", headers={"authorization": other}).status_code == 204
        for token in (user.token, other):
            assert_revoked(list_referrals(api, user, token))

    @pytest.mark.parametrize("route", PROTECTED)
    def test_a_login_right_after_in_the_same_second_works(self, api, make, monkeypatch, route):
        """The clock stands still: the old and new tokens differ only in the token version."""
        user = make.user()
        make.code(user)
        now = utcnow()
        monkeypatch.setattr(referral.security, "utcnow", lambda: now)
        before = token_of(api, user.email, user.password)
        assert api.post("/user/logout", headers={"authorization": before}).status_code == 204
        after = token_of(api, user.email, user.password)
        assert after != before
        assert_revoked(list_referrals(api, user, before))
        assert call(api, route, user, after).status_code in (200, 204)

    def test_logout_leaves_other_users_signed_in(self, api, make):
        user, other = make.user(), make.user()
        assert api.post("/user/logout", headers=user.auth).status_code == 204
        assert list_referrals(api, other, other.token).status_code == 200


# ------------------------------------------------------------------------------------------- #
# Password change
# ------------------------------------------------------------------------------------------- #


class TestPasswordChange:
    def test_hands_back_a_fresh_token_and_ends_the_old_ones(self, api, make):
        user = make.user()
        other = token_of(api, user.email, user.password)
        changed = change_password(api, user.token, user.password, NEW_PASSWORD)
        assert changed.status_code == 200, changed.text
        assert changed.json()["user_id"] == user.id
        assert changed.headers["cache-control"] == "no-store"
        for token in (user.token, other):
            assert_revoked(list_referrals(api, user, token))
        assert list_referrals(api, user, changed.json()["token"]).status_code == 200

    def test_the_old_password_is_401_and_the_new_one_works(self, api, make):
        user = make.user()
        assert change_password(api, user.token, user.password, NEW_PASSWORD).status_code == 200
        assert_problem(login(api, user.email, user.password), 401)
        old_grant = api.post(
            "/user/token", data={"grant_type": "password", "username": user.email, "password": user.password}
        )
        assert (old_grant.status_code, old_grant.json()["error"]) == (400, "invalid_grant")
        new_token = token_of(api, user.email, NEW_PASSWORD)
        assert list_referrals(api, user, new_token).status_code == 200

    def test_wrong_current_password_is_403_and_changes_nothing(self, api, make):
        user = make.user()
        body = assert_problem(change_password(api, user.token, "not-my-password", NEW_PASSWORD), 403)
        assert body["type"] == "urn:referral:problem:wrong-password"
        assert list_referrals(api, user, user.token).status_code == 200
        assert login(api, user.email, user.password).status_code == 200
        assert_problem(login(api, user.email, NEW_PASSWORD), 401)

    def test_wrong_current_password_counts_as_a_failed_login(self, settings):
        """Rate limits on, two failed logins per (email, address) a minute."""
        with serve(settings, rate_limit=True, rate_limit_login="2/minute") as api:
            user = Factory(api).user()
            for _ in range(2):
                assert_problem(change_password(api, user.token, "not-my-password", NEW_PASSWORD), 403)
            assert_problem(change_password(api, user.token, user.password, NEW_PASSWORD), 429)
            assert_problem(login(api, user.email, user.password), 429)


# ------------------------------------------------------------------------------------------- #
# Choosing a password
# ------------------------------------------------------------------------------------------- #

ALICE = "alice.smith@example.com"
REFUSED = [  # (email, password, the reason named in `errors`): refused wherever a password is chosen
    pytest.param(ALICE, "password", passwords.COMMON, id="common"),
    pytest.param(ALICE, "12345678", passwords.COMMON, id="common-digits"),
    pytest.param(ALICE, "PASSWORD1", passwords.COMMON, id="common-in-any-case"),
    pytest.param(ALICE, "ｐａｓｓｗｏｒｄ", passwords.COMMON, id="common-in-fullwidth-letters"),
    pytest.param(ALICE, "password ", passwords.COMMON, id="common-with-a-trailing-space"),
    pytest.param(ALICE, "  password  ", passwords.COMMON, id="common-with-spaces-around"),
    pytest.param(ALICE, "p\u0430ssword", passwords.COMMON, id="common-with-a-cyrillic-a"),
    pytest.param(ALICE, "\u0440\u0430ss\u051do\u0433d", passwords.COMMON, id="common-in-cyrillic-look-alikes"),
    pytest.param(ALICE, "passw0rd", passwords.COMMON, id="common-with-a-zero"),
    pytest.param(ALICE, "ＡＬＩＣＥ.ＳＭＩＴＨ!", passwords.NAMES_MAILBOX, id="local-part-in-fullwidth-letters"),
    pytest.param(ALICE, "\u0430lice.smith-2024", passwords.NAMES_MAILBOX, id="local-part-with-a-cyrillic-a"),
    pytest.param(ALICE, " " * 8, passwords.ONLY_WHITESPACE, id="only-whitespace"),
    pytest.param(ALICE, "alice.smith-2024", passwords.NAMES_MAILBOX, id="local-part"),
    pytest.param(ALICE, "I-am-ALICE.SMITH", passwords.NAMES_MAILBOX, id="local-part-in-any-case"),
    pytest.param(
        "a.lice@gmail.com", "my-alice-passphrase", passwords.NAMES_MAILBOX, id="gmail-local-part-without-dots"
    ),
    pytest.param("bob+shop@example.com", "bobsleigh-champion", passwords.NAMES_MAILBOX, id="local-part-without-tag"),
    pytest.param(ALICE, "aaaaaaaaaa", passwords.ONE_CHARACTER, id="one-letter-repeated"),
    pytest.param(ALICE, "aAaAaAaAaA", passwords.ONE_CHARACTER, id="one-letter-repeated-in-both-cases"),
    pytest.param(ALICE, "🙂" * 9, passwords.ONE_CHARACTER, id="one-emoji-repeated"),
    pytest.param(ALICE, "\u200b" * 10, passwords.INVISIBLE, id="zero-width-spaces"),
    pytest.param(ALICE, "\x00" * 10, passwords.INVISIBLE, id="nul-bytes"),
    pytest.param(ALICE, "correct\u200bhorse battery", passwords.INVISIBLE, id="a-zero-width-space-inside"),
    pytest.param(ALICE, "correct horse\u202ebattery", passwords.INVISIBLE, id="a-bidi-override-inside"),
    pytest.param(ALICE, "correct horse\nbattery", passwords.INVISIBLE, id="a-newline-inside"),
    pytest.param(ALICE, "correct horse battery\t", passwords.INVISIBLE, id="a-trailing-tab"),
    pytest.param(ALICE, "a\u0301b\u0301c\u0301d\u0301", passwords.TOO_SHORT, id="four-letters-with-four-accents"),
    pytest.param(ALICE, "   short   ", passwords.TOO_SHORT, id="short-once-trimmed"),
    pytest.param(ALICE, "🇫🇷🇩🇪🇮🇹🇪🇸", passwords.TOO_SHORT, id="four-flags-of-two-code-points-each"),
]
ACCEPTED = [
    pytest.param("al@example.com", "al-is-my-name-here", id="local-part-under-3-characters"),
    pytest.param(ALICE, "correct horse battery staple", id="uncommon"),
    pytest.param(ALICE, "  spaces around are trimmed  ", id="spaces-around"),
    pytest.param(ALICE, "crème brûlée à la française", id="latin-with-accents"),
    pytest.param(ALICE, "корректная лошадь батарейка", id="cyrillic"),
    pytest.param(ALICE, "σωστό άλογο μπαταρία", id="greek"),
    pytest.param(ALICE, "正しい馬の電池ホチキス", id="japanese"),
    pytest.param(ALICE, "正确的马电池订书钉", id="chinese"),
    pytest.param(ALICE, "حصان صحيح بطارية دباسة", id="arabic"),
    pytest.param(ALICE, "सही घोड़ा बैटरी", id="devanagari"),
    pytest.param(ALICE, "🐱🐶🦊🐼🐨🐯🦁🐮", id="emoji"),
    pytest.param(ALICE, "👍🏽 tulips 🌷 in spring", id="emoji-with-a-skin-tone-among-words"),
]


def choose_on_register(api, make, email, password):
    return api.post("/user/register", json={"email": email, "password": password}), "password"


def choose_on_referral(api, make, email, password):
    code = make.code(make.user())["code"]
    return api.post("/referals/register", json={"email": email, "code": code, "password": password}), "password"


def choose_on_change(api, make, email, password):
    user = make.user(email=email, password="a-fine-first-passphrase")
    return change_password(api, user.token, user.password, password), "new_password"


CHOOSING = [
    pytest.param(choose_on_register, id="register"),
    pytest.param(choose_on_referral, id="referral"),
    pytest.param(choose_on_change, id="password"),
]


@pytest.mark.parametrize("choose", CHOOSING)
@pytest.mark.parametrize(("email", "password", "reason"), REFUSED)
def test_refused_passwords_are_422_naming_the_field_and_the_reason(api, make, choose, email, password, reason):
    answer, field = choose(api, make, email, password)
    body = assert_problem(answer, 422)
    assert body["type"] == "urn:referral:problem:password-refused"
    assert body["errors"] == {field: reason}
    assert_problem(login(api, email, password), 401)  # nothing was stored with it


@pytest.mark.parametrize("choose", CHOOSING)
@pytest.mark.parametrize(("email", "password"), ACCEPTED)
def test_other_passwords_are_accepted(api, make, choose, email, password):
    answer, _ = choose(api, make, email, password)
    assert answer.status_code in (200, 201), answer.text
    assert login(api, email, password).status_code == 200


@pytest.mark.parametrize(
    "password", ["password", "password ", "aaaaaaaaaa", "p\u0430ssword", "a\u0301b\u0301c\u0301d\u0301"]
)
def test_signing_in_needs_only_the_right_password(api, password):
    """The rules are for choosing a password: one stored before them still signs in, exactly as it was chosen."""
    email = random_email()
    password_hash = referral.security._hash_sync(password, 4)
    insert = user_table.insert().values(email=email, password_hash=password_hash, created_at=utcnow())
    api.run(api.app.ctx.db.execute(insert))
    assert login(api, email, password).status_code == 200
    if password != password.strip():
        assert_problem(login(api, email, password.strip()), 401)  # never trimmed when checked


# ------------------------------------------------------------------------------------------- #
# Rehash on login
# ------------------------------------------------------------------------------------------- #


def stored_hash(api: LiveClient, user_id: int) -> str:
    query = user_table.select().with_only_columns(user_table.c.password_hash).where(user_table.c.id == user_id)
    return api.run(api.app.ctx.db.fetch_val(query))


def test_a_login_rehashes_a_hash_of_another_cost(api, make):
    user = make.user()
    assert stored_hash(api, user.id).startswith("$2b$04$")
    api.app.ctx.hasher.rounds = 5  # BCRYPT_ROUNDS raised
    assert login(api, user.email, user.password).status_code == 200
    rehashed = stored_hash(api, user.id)
    assert rehashed.startswith("$2b$05$")
    assert login(api, user.email, user.password).status_code == 200
    assert stored_hash(api, user.id) == rehashed  # same cost: left alone


def test_a_wrong_password_rehashes_nothing(api, make):
    user = make.user()
    before = stored_hash(api, user.id)
    api.app.ctx.hasher.rounds = 5
    assert_problem(login(api, user.email, "not-my-password"), 401)
    assert stored_hash(api, user.id) == before


# ------------------------------------------------------------------------------------------- #
# SECRET_KEY
# ------------------------------------------------------------------------------------------- #


@pytest.mark.parametrize("key", ["hunter2-secret", "k" * 31, "é" * 15])
def test_a_secret_key_under_32_bytes_is_refused_naming_the_variable(key):
    with pytest.raises(ConfigError) as refused:
        load_settings(env={"SECRET_KEY": key})
    message = str(refused.value)
    assert message.startswith("SECRET_KEY ")
    assert "32 bytes" in message
    assert key not in message


@pytest.mark.parametrize("key", ["k" * 32, "é" * 16])
def test_a_secret_key_of_32_bytes_is_accepted(key):
    assert load_settings(env={"SECRET_KEY": key}).secret_key == key


def test_the_service_refuses_to_start_with_a_weak_key(tmp_path):
    """Exits at once naming SECRET_KEY, without echoing the key (the exit status is the CLI's concern)."""
    env = server_env(SECRET_KEY="hunter2-secret", DB_NAME=str(tmp_path / "weak.db"))
    started = subprocess.run(
        [sys.executable, "-m", "referral"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
    )
    assert started.returncode != 0
    output = started.stdout + started.stderr
    assert "SECRET_KEY" in output
    assert "hunter2-secret" not in output


def test_a_deleted_accounts_id_is_never_handed_out_again(api, make):
    """Were the newest id reused, the deleted account's tokens would open the next account."""
    make.user()
    deleted = make.user()
    api.run(api.app.ctx.db.execute(user_table.delete().where(user_table.c.id == deleted.id)))
    newcomer = make.user()
    assert newcomer.id > deleted.id
    assert_problem(api.get("/refer/stats", headers=deleted.auth), 401)
    assert api.get("/refer/stats", headers=newcomer.auth).status_code == 200
