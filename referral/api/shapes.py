"""The JSON shapes of the answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from referral.services.models import CodeInfo, ReferralInfo


def iso(moment: datetime) -> str:
    """ISO 8601 with the UTC offset, e.g. 2026-12-03T21:15:00+00:00."""
    return moment.isoformat(timespec="seconds")


def code_json(code: CodeInfo) -> dict[str, Any]:
    return {"user_id": code.user_id, "code": code.code, "exp_date": iso(code.expires_at)}


def registered_referral_json(referral: ReferralInfo) -> dict[str, Any]:
    return {
        "id": referral.id,
        "email": referral.email,
        "exp_date": iso(referral.code.expires_at),
        "ref_key": code_json(referral.code),
    }


def listed_referral_json(referral: ReferralInfo) -> dict[str, Any]:
    return {
        "id": referral.id,
        "email": referral.email,
        "code": referral.code.code,
        "ref_key": code_json(referral.code),
    }
