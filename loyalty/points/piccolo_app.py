from loyalty.infrastructure.apps import domain_app
from loyalty.points import tables

APP_CONFIG = domain_app("points", tables, after=["members", "staff"])
