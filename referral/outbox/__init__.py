"""The outbox: what the service tells others, written with the change it reports and delivered after it.

Recording (`record`): an event is inserted, with one delivery per destination, in the database
transaction of the change it reports, so a change that is rolled back or refused sends nothing and a
committed one is never without its event. Delivering (`delivery`, `webhooks`): every worker claims due
deliveries, attempts them and records the outcome; a channel (webhooks today) knows how to send one.
The tables are `outbox_event` and `outbox_delivery` (`referral.db.tables`).
"""
