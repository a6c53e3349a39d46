"""The HTTP API: ``app.create_app`` builds it, ``server.serve`` runs it with the check scheduler and the alert loop."""
