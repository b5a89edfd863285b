"""Running as a service: systemd notify, staleness, Prometheus metrics, the health listener, and the monitor that ties them to the daemon."""
