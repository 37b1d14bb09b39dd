"""HTTP layer: thin blueprints that parse a request, call a service and shape the answer."""

from sanic import Blueprint

from referral.api.health import bp as health
from referral.api.integration import bp as integration
from referral.api.refer import bp as refer
from referral.api.referals import bp as referals
from referral.api.user import bp as user

api = Blueprint.group(user, refer, referals, integration, health)
