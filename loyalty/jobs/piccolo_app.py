from loyalty.infrastructure.apps import domain_app
from loyalty.jobs import tables

APP_CONFIG = domain_app("jobs", tables)
