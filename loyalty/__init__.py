"""Membership and loyalty points platform."""

import os

# Piccolo finds its engine through this module; set before any table is used.
os.environ.setdefault("PICCOLO_CONF", "loyalty.piccolo_conf")
