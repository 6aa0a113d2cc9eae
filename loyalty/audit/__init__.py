"""The audit trail: who changed what, when, with before and after for configuration."""
