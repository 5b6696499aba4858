"""Data, not code: the check catalog (checks.yaml) and layer runbook (runbooks.yaml), read by netdoctor.catalog."""
