-- Appservice mode: the users the appservice has registered on the homeserver, under
-- the registration (its as_token, hashed) that did it. A start registers only users
-- missing here: a warm restart of a thousand agents makes no /register call.
CREATE TABLE appservice_users (
    registration TEXT NOT NULL,
    user_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (registration, user_id)
);
