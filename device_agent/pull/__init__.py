"""Pulling images: the backend interface (``backend``), the factory that picks one by name
(``factory``, the only module that imports the backends), the backends themselves and the
built-in OCI puller with its registry client."""
