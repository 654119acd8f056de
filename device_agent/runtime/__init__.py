"""The running agent: its main loop, the MQTT link, the envelope handler, the inbox, the
password check, the pull schedule, the status it reports and its logging."""
