"""What the tests share: real files of every awkward kind, loopback servers, a throwaway
PostgreSQL, a browser, catalogs to train on. Imported by tests; never a test itself."""
