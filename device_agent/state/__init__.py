"""What the device keeps on disk: atomic files, key files, the credential store, the enrollment
record, the configuration, the state directory and the status file."""
