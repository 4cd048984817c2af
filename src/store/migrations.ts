import type { SqlDriver } from './driver.ts';

/**
 * Versioned schema changes, applied in order, each once, in a transaction. Append only:
 * never edit a migration that has shipped. Portable DDL: TEXT, BIGINT, INTEGER booleans,
 * JSON as TEXT, times as epoch milliseconds.
 */
export const MIGRATIONS: { version: number; name: string; sql: string[] }[] = [
  {
    version: 1,
    name: 'users, sessions, kv',
    sql: [
      `CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        email_verified INTEGER NOT NULL DEFAULT 0,
        name TEXT,
        groups_json TEXT NOT NULL DEFAULT '[]',
        password_hash TEXT,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
      `CREATE UNIQUE INDEX users_email ON users (email)`,
      `CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        site TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        last_seen_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        amr_json TEXT NOT NULL DEFAULT '[]',
        ip TEXT,
        user_agent TEXT
      )`,
      `CREATE INDEX sessions_user ON sessions (user_id)`,
      `CREATE INDEX sessions_expires ON sessions (expires_at)`,
      `CREATE TABLE kv (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
    ],
  },
  {
    version: 2,
    name: 'signing keys',
    sql: [
      // One row per JWS signing key (src/keys/keys.ts). private_jwk is AES-GCM ciphertext
      // (Secrets.encrypt, bound to the kid); public_jwk is the JWK that /.well-known/jwks.json shows.
      `CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        alg TEXT NOT NULL,
        public_jwk TEXT NOT NULL,
        private_jwk TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        activates_at BIGINT NOT NULL,
        retires_at BIGINT,
        first_key INTEGER
      )`,
      // 1 on the key a new store starts with, NULL on every later one (NULLs never collide):
      // of several nodes that start at once on an empty store, one insert wins.
      `CREATE UNIQUE INDEX signing_keys_first ON signing_keys (first_key)`,
    ],
  },
  {
    version: 3,
    name: 'identities, login states, provider tokens',
    sql: [
      `CREATE TABLE identities (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        provider TEXT NOT NULL,
        issuer TEXT NOT NULL,
        subject TEXT NOT NULL,
        email TEXT,
        email_verified INTEGER NOT NULL DEFAULT 0,
        name TEXT,
        groups_json TEXT NOT NULL DEFAULT '[]',
        created_at BIGINT NOT NULL,
        last_login_at BIGINT NOT NULL
      )`,
      `CREATE UNIQUE INDEX identities_issuer_subject ON identities (issuer, subject)`,
      `CREATE INDEX identities_user ON identities (user_id)`,
      `CREATE TABLE login_states (
        id_hash TEXT PRIMARY KEY,
        browser_hash TEXT NOT NULL,
        provider TEXT NOT NULL,
        site TEXT NOT NULL,
        purpose TEXT NOT NULL,
        session_hash TEXT,
        return_to TEXT NOT NULL,
        secret TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        used_at BIGINT
      )`,
      `CREATE INDEX login_states_expires ON login_states (expires_at)`,
      `CREATE TABLE provider_tokens (
        owner TEXT NOT NULL,
        provider TEXT NOT NULL,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        session_hash TEXT REFERENCES sessions (id_hash) ON DELETE CASCADE,
        data TEXT NOT NULL,
        expires_at BIGINT,
        version INTEGER NOT NULL DEFAULT 1,
        lease_holder TEXT,
        lease_until BIGINT NOT NULL DEFAULT 0,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (owner, provider)
      )`,
      `CREATE INDEX provider_tokens_user ON provider_tokens (user_id)`,
      `CREATE INDEX provider_tokens_session ON provider_tokens (session_hash)`,
    ],
  },
  {
    version: 4,
    name: 'oauth: clients, device authorizations, codes, grants',
    sql: [
      `CREATE TABLE oauth_clients (
        id TEXT PRIMARY KEY,
        secret_hash TEXT,
        metadata_json TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        created_ip TEXT
      )`,
      `CREATE TABLE oauth_device_codes (
        device_hash TEXT PRIMARY KEY,
        user_code_hash TEXT NOT NULL,
        client_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        resource TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        interval_ms BIGINT NOT NULL,
        last_poll_at BIGINT,
        too_fast INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        user_id TEXT REFERENCES users (id) ON DELETE CASCADE,
        amr_json TEXT NOT NULL DEFAULT '[]',
        auth_time BIGINT,
        decided_at BIGINT,
        session_hash TEXT,
        ip TEXT,
        user_agent TEXT
      )`,
      `CREATE UNIQUE INDEX oauth_device_codes_user_code ON oauth_device_codes (user_code_hash)`,
      `CREATE INDEX oauth_device_codes_expires ON oauth_device_codes (expires_at)`,
      `CREATE TABLE oauth_codes (
        code_hash TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        redirect_uri TEXT NOT NULL,
        code_challenge TEXT NOT NULL,
        scope TEXT NOT NULL,
        resource TEXT NOT NULL,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        amr_json TEXT NOT NULL DEFAULT '[]',
        auth_time BIGINT NOT NULL,
        session_hash TEXT,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        redeemed_at BIGINT,
        grant_id TEXT
      )`,
      `CREATE INDEX oauth_codes_expires ON oauth_codes (expires_at)`,
      `CREATE TABLE oauth_grants (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        client_id TEXT NOT NULL,
        client_name TEXT NOT NULL,
        kind TEXT NOT NULL,
        scope TEXT NOT NULL,
        resource TEXT NOT NULL,
        amr_json TEXT NOT NULL DEFAULT '[]',
        auth_time BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        last_used_at BIGINT NOT NULL,
        ip TEXT,
        user_agent TEXT,
        expires_at BIGINT NOT NULL,
        revoked_at BIGINT,
        revoked_reason TEXT,
        refresh_hash TEXT,
        previous_hash TEXT,
        rotated_at BIGINT,
        successor TEXT,
        generation INTEGER NOT NULL DEFAULT 0
      )`,
      `CREATE INDEX oauth_grants_user ON oauth_grants (user_id)`,
      `CREATE INDEX oauth_grants_expires ON oauth_grants (expires_at)`,
    ],
  },
  {
    version: 6,
    name: 'email tokens',
    sql: [
      // Links Gatehouse mails (email verification, password reset): only the token's SHA-256 is
      // kept. `binding` is what else a token must still match when used (a reset: the password
      // hash it was issued against); `superseded_at` is set when a newer one of its purpose is issued.
      `CREATE TABLE email_tokens (
        id_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        purpose TEXT NOT NULL,
        email TEXT NOT NULL,
        binding TEXT NOT NULL DEFAULT '',
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        used_at BIGINT,
        superseded_at BIGINT
      )`,
      `CREATE INDEX email_tokens_user ON email_tokens (user_id, purpose)`,
      `CREATE INDEX email_tokens_expires ON email_tokens (expires_at)`,
    ],
  },
  {
    version: 7,
    name: 'job leases, purge indexes',
    sql: [
      // One row per background job (src/jobs/): the node whose holder id is here runs it until
      // expires_at; another takes the row over only once that has passed (an atomic upsert).
      `CREATE TABLE job_leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at BIGINT NOT NULL
      )`,
      // The purges select by these too (idle sessions, idle or revoked grants): without an index
      // each batch scanned the table.
      `CREATE INDEX sessions_last_seen ON sessions (last_seen_at)`,
      `CREATE INDEX oauth_grants_last_used ON oauth_grants (last_used_at)`,
      `CREATE INDEX oauth_grants_revoked ON oauth_grants (revoked_at)`,
    ],
  },
  {
    version: 8,
    name: 'second factors',
    sql: [
      // Passkeys (WebAuthn credentials): the public key and the signature counter, never a secret.
      `CREATE TABLE passkeys (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        public_key TEXT NOT NULL,
        counter BIGINT NOT NULL DEFAULT 0,
        transports_json TEXT NOT NULL DEFAULT '[]',
        device_type TEXT NOT NULL,
        backed_up INTEGER NOT NULL DEFAULT 0,
        name TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        last_used_at BIGINT
      )`,
      `CREATE INDEX passkeys_user ON passkeys (user_id)`,
      // An authenticator app's seed, encrypted with the master key; last_step refuses a replayed code.
      `CREATE TABLE totp_factors (
        user_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
        secret TEXT NOT NULL,
        confirmed INTEGER NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        last_step BIGINT
      )`,
      // Single-use recovery codes, by their keyed hash.
      `CREATE TABLE recovery_codes (
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        code_hash TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        used_at BIGINT,
        PRIMARY KEY (user_id, code_hash)
      )`,
      // A half-done sign-in or a WebAuthn ceremony: a random id in a short-lived cookie (only its
      // SHA-256 here), never a session. user_id is null for a passkey sign-in not yet answered.
      `CREATE TABLE mfa_pending (
        id_hash TEXT PRIMARY KEY,
        user_id TEXT REFERENCES users (id) ON DELETE CASCADE,
        site TEXT NOT NULL,
        purpose TEXT NOT NULL,
        amr_json TEXT NOT NULL DEFAULT '[]',
        return_to TEXT NOT NULL DEFAULT '',
        challenge TEXT,
        data TEXT NOT NULL DEFAULT '{}',
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
      )`,
      `CREATE INDEX mfa_pending_expires ON mfa_pending (expires_at)`,
    ],
  },
  {
    version: 9,
    name: 'audit events',
    sql: [
      // The audit trail (src/audit/): no foreign key, so a deleted user's history stays until
      // audit.retention has passed. detail_json is a small flat object, never a secret.
      `CREATE TABLE audit_events (
        id TEXT PRIMARY KEY,
        at BIGINT NOT NULL,
        event TEXT NOT NULL,
        user_id TEXT,
        outcome TEXT NOT NULL,
        ip TEXT,
        user_agent TEXT,
        actor TEXT,
        detail_json TEXT NOT NULL DEFAULT '{}'
      )`,
      `CREATE INDEX audit_events_user ON audit_events (user_id, at)`,
      `CREATE INDEX audit_events_at ON audit_events (at)`,
    ],
  },
  {
    version: 10,
    name: 'sessions: auth time (re-authentication)',
    sql: [
      // When the user last proved who they are in the session (accounts/reauth.ts); null in
      // older rows, read as created_at.
      `ALTER TABLE sessions ADD COLUMN auth_time BIGINT`,
    ],
  },
  {
    version: 11,
    name: 'sessions: the provider session they came from (back-channel logout)',
    sql: [
      // A session signed in through an OpenID provider: the provider's subject and its session id
      // (the ID token's sid, when it has one), so the provider's logout token can end it.
      `CREATE TABLE session_providers (
        session_hash TEXT PRIMARY KEY REFERENCES sessions (id_hash) ON DELETE CASCADE,
        provider TEXT NOT NULL,
        subject TEXT NOT NULL,
        sid TEXT,
        created_at BIGINT NOT NULL
      )`,
      `CREATE INDEX session_providers_sid ON session_providers (provider, sid)`,
      `CREATE INDEX session_providers_subject ON session_providers (provider, subject)`,
    ],
  },
  {
    version: 12,
    name: 'app events: the outbox of events for apps',
    sql: [
      // One row per event and app (src/events/), deleted once the app took it. No foreign key:
      // an account's deletion is itself one of the events. value: the new address of an
      // email_changed event (kept only until the app took it).
      `CREATE TABLE app_events (
        id TEXT PRIMARY KEY,
        app TEXT NOT NULL,
        type TEXT NOT NULL,
        user_id TEXT NOT NULL,
        at BIGINT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at BIGINT NOT NULL,
        last_error TEXT,
        value TEXT
      )`,
      `CREATE INDEX app_events_next ON app_events (next_at)`,
    ],
  },
  {
    version: 13,
    name: 'sessions: the session single sign-on made one from',
    sql: [
      // No foreign key: the store's delete() ends the children with their parent, and a copy
      // between stores (transfer.ts) inserts rows in any order.
      `ALTER TABLE sessions ADD COLUMN parent_hash TEXT`,
      `CREATE INDEX sessions_parent ON sessions (parent_hash)`,
    ],
  },
];

export async function migrate(db: SqlDriver): Promise<number> {
  await db.run(
    `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`,
  );
  let applied = 0;
  for (const m of MIGRATIONS) {
    const done = await db.transaction(async (tx) => {
      // Taking the row first serialises nodes that start at the same time (PostgreSQL) and
      // makes a second runner skip what the first applied.
      const inserted = await tx.run(
        `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?) ON CONFLICT (version) DO NOTHING`,
        [m.version, m.name, Date.now()],
      );
      if (inserted === 0) return false;
      for (const statement of m.sql) await tx.run(statement);
      return true;
    });
    if (done) applied++;
  }
  return applied;
}

export const LATEST_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
