"""Delivery to the HIS: the MLLP sender today; the durable outbox arrives with issue 6."""
