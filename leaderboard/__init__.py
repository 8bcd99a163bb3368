"""The peftbench Streamlit leaderboard: pages, data access and charts.

Data access (`data`), charts (`charts`) and the SQL box (`sqlbox`) import no Streamlit,
so the static report and the speed benchmark reuse them without a server.
"""
