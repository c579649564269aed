"""The readers' answers: every analysis the app gave, the read a clinician gave for it, and the
site's own accuracy computed from them. No Flask: the web layer calls in, never the other way.

``models`` holds the tables, ``store`` reads and writes them (SQLite in the instance folder, or
PostgreSQL), ``statistics`` turns the stored reads into the site's figures.
"""
