"""Docker registry token authentication: scopes, grants, signing keys and JWTs.

Pure building blocks for the ``/oauth2/token`` endpoint that a CNCF Distribution registry
(``auth: token:``) sends clients to. Nothing here opens a database or knows about Flask.

- :mod:`.scopes`: parse ``repository:samples/hello-world:pull,push`` into :class:`Scope` values.
- :mod:`.grants`: which of the requested registry actions the allowed ACR actions permit.
- :mod:`.keys`: one ES256 signing key with its self-signed certificate and libtrust key id.
- :mod:`.keyring`: the keys on disk, rotation with a publish delay, revocation, the registry's
  cert bundle.
- :mod:`.recheck`: how often a signing process rechecks the ring, so when a new key signs.
- :mod:`.tokens`: mint the JWT the registry verifies.
- :mod:`.config`: the registry's ``auth: token:`` configuration section.
"""
