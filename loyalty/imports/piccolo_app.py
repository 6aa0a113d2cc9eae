from loyalty.imports import tables
from loyalty.infrastructure.apps import domain_app

APP_CONFIG = domain_app("imports", tables, after=["members"])
