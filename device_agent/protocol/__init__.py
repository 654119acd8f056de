"""The wire format between server and device: the sealed envelope, its refusals, the status
messages, the device-id rule, topic names and public-key encoding. Imports only the stdlib and
``cryptography``; it is the one part of the agent the server imports."""
