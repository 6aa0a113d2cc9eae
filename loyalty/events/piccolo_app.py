from loyalty.events import tables
from loyalty.infrastructure.apps import domain_app

APP_CONFIG = domain_app("events", tables)
