"""Shared infrastructure: database, clock, money, caches, i18n, logs, messaging, rate limits,
sessions, runtime, serving and the embedded servers. Imports nothing from the domains."""
