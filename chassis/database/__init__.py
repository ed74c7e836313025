"""The database: the engine and its sessions, the models' base, upsert, the chassis's own
migrations. It raises; the web layer (chassis/web/errors.py) turns errors into answers."""
