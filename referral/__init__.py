"""Referral service: users, expiring referral codes and the referrals made with them."""
