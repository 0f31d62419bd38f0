-- The media repository's metadata (the bytes live in the storage backend, never here).
--
-- `media` holds one row per mxc URI. `origin` is this server's name for local uploads; remote
-- media cached later (federation) gets rows under its own server's name. Identical bytes are
-- stored once, under their SHA-256 (`sha256`), however many media ids name them; a row whose
-- `uploaded_at` is NULL is an id handed out by `POST /_matrix/media/v1/create` that still
-- waits for its bytes.
CREATE TABLE media (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    uploader TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Until then a pending id may be uploaded to; after it, it is forgotten.
    unused_expires_at BIGINT,
    uploaded_at BIGINT,
    content_type TEXT,
    filename TEXT,
    size BIGINT,
    sha256 TEXT,
    -- Uploaded while the spec's freeze applied: never served by the unauthenticated endpoints.
    authenticated_only BOOLEAN NOT NULL,
    quarantined BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (origin, media_id),
    CHECK ((uploaded_at IS NULL) = (sha256 IS NULL))
);

CREATE INDEX media_pending_by_uploader ON media (uploader) WHERE uploaded_at IS NULL;
CREATE INDEX media_by_content ON media (sha256) WHERE sha256 IS NOT NULL;
CREATE INDEX media_by_uploader ON media (uploader, created_at);

-- Thumbnails belong to the content, not to a media id: identical uploads share them. The key
-- is what was asked for (a size and a method); the row says what was made.
CREATE TABLE media_thumbnails (
    sha256 TEXT NOT NULL,
    requested_width INT NOT NULL,
    requested_height INT NOT NULL,
    method TEXT NOT NULL,
    width INT NOT NULL,
    height INT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (sha256, requested_width, requested_height, method)
);
