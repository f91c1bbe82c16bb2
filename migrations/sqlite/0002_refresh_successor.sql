-- The successor a rotation issued, sealed under a key derived from the token it
-- replaced (never readable from the stored hashes): a replay of that token
-- inside `refresh_reuse_grace` gets the same successor back. Keep in step with
-- migrations/postgres.
ALTER TABLE refresh_families ADD COLUMN successor_sealed BLOB;
