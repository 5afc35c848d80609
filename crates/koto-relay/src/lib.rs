//! Output relay: /ws/ingest producers, per-session STOP routing, paced fan-out to live clients.
