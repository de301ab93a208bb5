"""The gateway's HTTP side: health, the REST API (and, later, the validation app)."""
