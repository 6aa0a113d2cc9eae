from loyalty.infrastructure.apps import domain_app
from loyalty.tiers import tables

APP_CONFIG = domain_app("tiers", tables, after=["members", "points"])
