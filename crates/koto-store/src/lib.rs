//! SQLite storage: short-term memory (turns), outbox, migrations.
