"""Recorded webhook fixtures: the file format, the scrubber, the recording proxy and replay.

A fixture is one inbound webhook as a JSON file named ``NNNN-<source>.json``::

    {"source": "zendesk", "offset_seconds": 42.125,
     "recorded_at": "2026-11-26T12:00:42.125Z",
     "headers": {"content-type": "application/json",
                 "x-zendesk-webhook-invocation-id": "8350205582"},
     "body": {"zendesk_webhook": {...}}}

``offset_seconds`` counts from the first request of the recording; ``recorded_at`` is when the
request arrived (UTC), from which replay shifts the event times in the body. ``headers`` keeps only
``KEPT_HEADERS`` (the content type and the delivery ids the service deduplicates on): never
``Authorization`` nor any signature or signature timestamp, because replay authenticates and
signs afresh with the secret it is given. ``body`` is the parsed JSON after ``Scrubber``.

Recording happens in a small proxy in front of the service (``create_recorder_app``), not in
the service itself, so the production request path stays as it is. A request is written only
once it is known to be authentic: the service's 2xx answer says so when forwarding; without a
service to forward to, the proxy checks the credentials itself with the service's own
verifiers. Replay re-signs every fixture, so recording a forged request would turn it into a
validly signed one.

Nothing here does any work at import time; nothing here prints or logs a secret.
"""
