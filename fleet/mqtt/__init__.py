"""MQTT delivery: device topics, the broker's dynamic-security admin, and the server's publisher.

Nothing here touches the database; the service layer decides what to publish and records it.
"""
