from loyalty.audit import tables
from loyalty.infrastructure.apps import domain_app

APP_CONFIG = domain_app("audit", tables)
