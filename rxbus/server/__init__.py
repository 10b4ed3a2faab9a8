"""``rxbus serve``: a bus behind a Socket.IO server, HTTP ingest and a live dashboard."""
