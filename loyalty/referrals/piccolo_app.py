from loyalty.infrastructure.apps import domain_app
from loyalty.referrals import tables

APP_CONFIG = domain_app("referrals", tables, after=["members", "points", "tiers"])
