"""The dashboard pages; ``dashboards/app.py`` navigates between them."""
