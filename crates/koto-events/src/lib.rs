//! Outbox relay to Redis Streams (feature redis) or embedded consumers; LTM and analytics workers.
