"""The console entry points: ``fleet-agent`` (``cli``: enroll, run, status) and
``docker-credential-fleet`` (``credential_helper``)."""
