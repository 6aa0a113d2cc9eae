from loyalty.infrastructure.apps import domain_app
from loyalty.webhooks import tables

APP_CONFIG = domain_app("webhooks", tables, after=["events"])
