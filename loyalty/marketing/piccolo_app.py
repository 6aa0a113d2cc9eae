from loyalty.infrastructure.apps import domain_app
from loyalty.marketing import tables

APP_CONFIG = domain_app("marketing", tables, after=["members", "rewards", "events"])
