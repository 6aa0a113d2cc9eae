from loyalty.infrastructure.db import domain_app
from loyalty.webhooks import tables

APP_CONFIG = domain_app("webhooks", tables, after=["events"])
