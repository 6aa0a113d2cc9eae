from loyalty.infrastructure.apps import domain_app
from loyalty.members import tables

APP_CONFIG = domain_app("members", tables, after=["staff"])
