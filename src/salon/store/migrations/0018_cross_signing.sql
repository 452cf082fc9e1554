-- Cross-signing: each identity's master, self-signing and user-signing keys (each
-- pickled with the gateway's pickle key), and the device the self-signing key last
-- signed, so Element shows the identity's messages without a red shield.
CREATE TABLE crypto_cross_signing (
    user_id TEXT PRIMARY KEY,
    master TEXT NOT NULL,
    self_signing TEXT NOT NULL,
    user_signing TEXT NOT NULL,
    -- NULL until the keys are on the homeserver and the device is signed.
    signed_device TEXT
);
