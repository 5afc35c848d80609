//! Integration tests of the SQLite store on real files.
