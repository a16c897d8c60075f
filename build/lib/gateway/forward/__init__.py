"""Forwarders: drain the durable outbox to the outside world (MQTT, webhooks)."""
