"""Alert delivery: the sinks alerts are sent to and the dispatcher that drains the store's queue.

The store keeps alerts and one queued delivery per alert per sink per change
(``store.sql_alerts``). ``desk.AlertDesk`` raises, acknowledges and resolves alerts with the
configured sinks named, ``dispatcher.AlertDispatcher`` delivers what is due and retries failures
with backoff, and each sink (``webhook.WebhookSink``, ``alertmanager.AlertmanagerSink``) turns
an alert into one HTTP request through ``http_post``. ``sinks.sinks_from_settings`` builds the
sinks the controller's settings name.
"""
