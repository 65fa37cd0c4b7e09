"""``rotator daemon``: scheduled sweeps (service, jobs), ``/healthz`` and ``/metrics``
(http, metrics) and notifications (notify, summary)."""
