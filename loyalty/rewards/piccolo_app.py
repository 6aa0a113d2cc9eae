from loyalty.infrastructure.apps import domain_app
from loyalty.rewards import tables

APP_CONFIG = domain_app("rewards", tables, after=["members", "points"])
