"""Referral service: users, expiring referral codes and the referrals made with them."""

__version__ = "1.0.0"  # pyproject.toml's [project].version (tests/test_metrics.py checks it)
