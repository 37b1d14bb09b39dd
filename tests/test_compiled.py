"""The statements compiled once (`referral.db.compiled`) answer what `databases` answers for the same
statement, on both backends; and what they take from SQLAlchemy is still there, named when it is not.

`compiled.py` is one of the two speed exceptions (ARCHITECTURE.md, "The workarounds"): it uses
SQLAlchemy's public compiler attributes, and requirements.txt allows SQLAlchemy's 2.1 patch releases
(`~=2.1.9`). A release that changes what it relies on fails here, by name, before it can answer wrong.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from referral.clock import utcnow
from referral.db.codes import ACTIVE_CODE_BY_EMAIL
from referral.db.compiled import DIALECTS, CompiledQuery
from referral.db.referrals import REFERRAL_PAGE
from referral.db.users import TOKEN_VERSION

EVERY_QUERY = {
    "ACTIVE_CODE_BY_EMAIL": ACTIVE_CODE_BY_EMAIL,
    "REFERRAL_PAGE": REFERRAL_PAGE,
    "TOKEN_VERSION": TOKEN_VERSION,
}


def placeholders(dialect_name: str, sql: str) -> list[str]:
    """The parameters' places in order: `?` each time (SQLite), `$n` once per number (asyncpg)."""
    if dialect_name == "sqlite":
        return re.findall(r"\?", sql)
    return sorted(set(re.findall(r"\$(\d+)", sql)), key=int)


@pytest.mark.parametrize("dialect_name", sorted(DIALECTS))
@pytest.mark.parametrize("name", sorted(EVERY_QUERY))
def test_what_compiled_py_takes_from_sqlalchemy_is_still_there(name, dialect_name):
    query, dialect = EVERY_QUERY[name], DIALECTS[dialect_name]
    compiled = query.statement.compile(dialect=dialect)
    where = f"SQLAlchemy {sa.__version__}, {name} on {dialect_name}: referral/db/compiled.py relies on"
    for attribute in ("string", "positiontup", "binds"):
        assert hasattr(compiled, attribute), f"{where} SQLCompiler.{attribute}, which is gone"
    assert compiled.positiontup, f"{where} SQLCompiler.positiontup naming the parameters in order"
    places = placeholders(dialect_name, compiled.string)
    assert len(places) == len(compiled.positiontup), f"{where} one name in positiontup per parameter's place"
    assert set(compiled.positiontup) <= set(compiled.binds), f"{where} SQLCompiler.binds holding each name"
    for column in query.statement.selected_columns:
        implementation = column.type.dialect_impl(dialect)
        assert callable(implementation.result_processor), f"{where} TypeEngine.result_processor"
        assert callable(implementation.bind_processor), f"{where} TypeEngine.bind_processor"


def both_ways(api, query: CompiledQuery, **params: object) -> tuple[list[dict], list[dict]]:
    """(what the compiled query answers, what `databases` answers for the same statement)."""
    db = api.app.ctx.db
    compiled = api.run(query.fetch_all(db, **params))
    plain = [dict(row._mapping) for row in api.run(db.fetch_all(query.statement.params(**params)))]
    return compiled, plain


def test_each_compiled_query_answers_what_databases_answers(api, make):
    referrer = make.user()
    code = make.code(referrer)["code"]
    for _ in range(3):
        make.referral(code)
    now = utcnow()

    cases = [
        (ACTIVE_CODE_BY_EMAIL, {"email": referrer.email, "now": now}),
        (ACTIVE_CODE_BY_EMAIL, {"email": referrer.email, "now": now + timedelta(days=30)}),  # expired by then
        (REFERRAL_PAGE, {"referrer_id": referrer.id, "limit": 2, "offset": 1}),
        (REFERRAL_PAGE, {"referrer_id": referrer.id + 1000, "limit": 100, "offset": 0}),
        (TOKEN_VERSION, {"user_id": referrer.id}),
    ]
    answered = 0
    for query, params in cases:
        compiled, plain = both_ways(api, query, **params)
        assert compiled == plain, (query.statement, params)
        answered += len(compiled)
    assert answered == 1 + 2 + 1  # rows were compared, not only empty answers

    [found] = both_ways(api, ACTIVE_CODE_BY_EMAIL, email=referrer.email, now=now)[0]
    assert found["code"] == code
    assert found["expires_at"].tzinfo is not None  # the column type's result processor ran
