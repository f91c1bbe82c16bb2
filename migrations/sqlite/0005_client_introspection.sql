-- The API resources whose access tokens a client may introspect besides its
-- own (a resource server's client): a JSON list of resource identifiers,
-- empty by default, so that introspection answers a client about its own
-- tokens only. Keep in step with migrations/postgres.
ALTER TABLE clients ADD COLUMN introspection TEXT NOT NULL DEFAULT '[]';
