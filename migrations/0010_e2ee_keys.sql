-- End-to-end encryption keys (spec: "End-to-End Encryption"), except key backup.
--
-- Keys are stored as the JSON the client uploaded (signatures cover their canonical form, so
-- the object must come back as signed). Per-device keys go with their device: deleting a
-- device deletes them through the foreign keys.

-- A device's identity keys (`device_keys` of /keys/upload), without signatures other
-- clients added later (those live in `e2e_signatures`).
CREATE TABLE e2e_device_keys (
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    key_json        JSONB NOT NULL,
    PRIMARY KEY (user_id, device_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- Unclaimed one-time keys; a claim deletes the row it hands out.
CREATE TABLE e2e_one_time_keys (
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    algorithm       TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    key_json        JSONB NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- One fallback key per device and algorithm, handed out (and marked used) when no one-time
-- key is left.
CREATE TABLE e2e_fallback_keys (
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    algorithm       TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    key_json        JSONB NOT NULL,
    used            BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id, algorithm),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- Cross-signing keys: `master`, `self_signing`, `user_signing`, the latest of each per user.
CREATE TABLE e2e_cross_signing_keys (
    user_id         TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    key_type        TEXT NOT NULL CHECK (key_type IN ('master', 'self_signing', 'user_signing')),
    -- The public key (unpadded base64), which is also the key's id after `ed25519:`.
    public_key      TEXT NOT NULL,
    key_json        JSONB NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded through /keys/signatures/upload, merged into the signed object when it
-- is queried. `target_key_id` is a device id or a cross-signing public key.
CREATE TABLE e2e_signatures (
    target_user_id  TEXT NOT NULL,
    target_key_id   TEXT NOT NULL,
    signer_user_id  TEXT NOT NULL,
    signer_key_id   TEXT NOT NULL,
    signature       TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- Device-list changes (DESIGN §3): a row per user whose devices or keys changed, at the
-- stream position of the change. `/sync` and `/keys/changes` read them by window.
CREATE TABLE device_list_changes (
    stream_position BIGINT NOT NULL,
    user_id         TEXT NOT NULL,
    PRIMARY KEY (user_id, stream_position)
);
CREATE INDEX device_list_changes_position ON device_list_changes (stream_position);
