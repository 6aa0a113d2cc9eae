from loyalty.infrastructure.apps import domain_app
from loyalty.staff import tables

APP_CONFIG = domain_app("staff", tables)
