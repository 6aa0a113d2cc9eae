from loyalty.imports import tables
from loyalty.infrastructure.db import domain_app

APP_CONFIG = domain_app("imports", tables, after=["members"])
