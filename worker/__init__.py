"""The worker: settings, the job contract, broker and actors, dispatch, file records,
blob storage, metering, metrics and the ``extworker`` CLI.

Data flows one way: message → validated job (``contract``) → extension result
(``pipeline`` calls ``extensions``) → record patch + units (``records``,
``metering``) → delivery (``webhooks``).
"""
