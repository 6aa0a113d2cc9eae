from loyalty.infrastructure.apps import domain_app
from loyalty.reps import tables

APP_CONFIG = domain_app("reps", tables, after=["members", "staff", "tiers"])
