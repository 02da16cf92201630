-- Pipeline schema. Idempotent: every statement may run again on an up-to-date database.
-- Apply with `python -m pipeline.db migrate`, which runs this file in one transaction under an
-- advisory lock and returns the version recorded at the end.

CREATE TABLE IF NOT EXISTS schema_version (
    version    int PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Domain tables stamp updated_at themselves so no writer can forget it.
CREATE OR REPLACE FUNCTION pipeline_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- job_status: one row per job, written by the status mirror (from the queue's event stream) and
-- by handlers in their own transactions. (event_ms, event_seq) is the Redis stream id of the
-- last event applied: the row only moves forward, so late or replayed events change nothing.
-- (0, 0) means no event has been applied yet (row created by the application).
-- ---------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS job_status (
    job_id        text PRIMARY KEY,
    queue         text,
    job_type      text NOT NULL,
    related_id    text,
    status        text NOT NULL DEFAULT 'waiting',
    progress      int NOT NULL DEFAULT 0,
    error_message text,
    error_type    text,
    attempts      int NOT NULL DEFAULT 0,
    event_ms      bigint NOT NULL DEFAULT 0,
    event_seq     bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_status_status_check
        CHECK (status IN ('waiting', 'active', 'completed', 'failed', 'cancelled')),
    CONSTRAINT job_status_progress_check CHECK (progress BETWEEN 0 AND 100),
    CONSTRAINT job_status_attempts_check CHECK (attempts >= 0)
);
CREATE INDEX IF NOT EXISTS job_status_related_id_idx ON job_status (related_id);
-- Serves "jobs in state X" listings and the cleanup of old finished rows.
CREATE INDEX IF NOT EXISTS job_status_status_updated_idx ON job_status (status, updated_at);

-- ---------------------------------------------------------------------------------------------
-- Pipeline domain: sector research -> sub-sectors (human approval) -> ranked stocks ->
-- analysis attempts judged and formatted. Children cascade with their parent.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS sector_analysis (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       text NOT NULL,
    sector_name   text NOT NULL,
    status        text NOT NULL DEFAULT 'researching',
    research      text,
    error_message text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    CONSTRAINT sector_analysis_status_check CHECK (
        status IN ('researching', 'awaiting_approval', 'in_progress', 'completed', 'failed',
                   'budget_exceeded', 'cancelled')
    ),
    CONSTRAINT sector_analysis_sector_name_check CHECK (length(sector_name) BETWEEN 1 AND 200)
);
CREATE INDEX IF NOT EXISTS sector_analysis_user_idx ON sector_analysis (user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS sector_analysis_status_idx ON sector_analysis (status);

CREATE TABLE IF NOT EXISTS sub_sector (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sector_analysis_id uuid NOT NULL REFERENCES sector_analysis (id) ON DELETE CASCADE,
    name               text NOT NULL,
    thesis             text,
    why_now            text,
    status             text NOT NULL DEFAULT 'awaiting_approval',
    error_message      text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    approved_at        timestamptz,
    completed_at       timestamptz,
    CONSTRAINT sub_sector_status_check CHECK (
        status IN ('awaiting_approval', 'approved', 'ranking', 'analyzing', 'completed', 'failed')
    ),
    -- Research may be retried: the same sub-sector name must upsert, not duplicate.
    CONSTRAINT sub_sector_name_unique UNIQUE (sector_analysis_id, name)
);
CREATE INDEX IF NOT EXISTS sub_sector_status_idx ON sub_sector (status);

CREATE TABLE IF NOT EXISTS stock (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sub_sector_id uuid NOT NULL REFERENCES sub_sector (id) ON DELETE CASCADE,
    ticker        text NOT NULL,
    name          text,
    rank          int NOT NULL,
    rationale     text,
    status        text NOT NULL DEFAULT 'ranked',
    rejections    int NOT NULL DEFAULT 0,
    final_reasons jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    CONSTRAINT stock_rank_check CHECK (rank BETWEEN 1 AND 10),
    CONSTRAINT stock_ticker_check CHECK (length(ticker) BETWEEN 1 AND 16),
    CONSTRAINT stock_rejections_check CHECK (rejections >= 0),
    CONSTRAINT stock_status_check CHECK (
        status IN ('ranked', 'analyzing', 'judging', 'formatting', 'completed', 'failed')
    ),
    CONSTRAINT stock_ticker_unique UNIQUE (sub_sector_id, ticker)
);
CREATE INDEX IF NOT EXISTS stock_status_idx ON stock (status);

-- One row per analysis attempt of a stock; a judge rejection leads to the next attempt.
CREATE TABLE IF NOT EXISTS stock_analysis (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    stock_id      uuid NOT NULL REFERENCES stock (id) ON DELETE CASCADE,
    attempt       int NOT NULL,
    variation     jsonb,
    analysis      text,
    verdict       jsonb,
    approved      boolean,
    insights      jsonb,
    status        text NOT NULL DEFAULT 'analyzing',
    input_tokens  int NOT NULL DEFAULT 0,
    output_tokens int NOT NULL DEFAULT 0,
    cost_usd      numeric(12, 6) NOT NULL DEFAULT 0,
    usage         jsonb,
    error_message text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    CONSTRAINT stock_analysis_attempt_check CHECK (attempt >= 1),
    CONSTRAINT stock_analysis_status_check CHECK (
        status IN ('analyzing', 'judging', 'approved', 'rejected', 'formatting', 'completed',
                   'failed')
    ),
    CONSTRAINT stock_analysis_tokens_check CHECK (input_tokens >= 0 AND output_tokens >= 0),
    CONSTRAINT stock_analysis_attempt_unique UNIQUE (stock_id, attempt)
);
CREATE INDEX IF NOT EXISTS stock_analysis_status_idx ON stock_analysis (status);

-- Token usage and cost of each model call, per job. No foreign key to job_status on purpose:
-- cost accounting outlives the cleanup of finished job rows. (job_id, attempt, call_index)
-- lets a retried write upsert instead of double counting.
CREATE TABLE IF NOT EXISTS llm_usage (
    id                          bigserial PRIMARY KEY,
    job_id                      text NOT NULL,
    attempt                     int NOT NULL DEFAULT 1,
    call_index                  int NOT NULL DEFAULT 0,
    stage                       text NOT NULL,
    model                       text NOT NULL,
    related_id                  text,
    input_tokens                int NOT NULL DEFAULT 0,
    output_tokens               int NOT NULL DEFAULT 0,
    cache_creation_input_tokens int NOT NULL DEFAULT 0,
    cache_read_input_tokens     int NOT NULL DEFAULT 0,
    web_search_requests         int NOT NULL DEFAULT 0,
    cost_usd                    numeric(12, 6) NOT NULL DEFAULT 0,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT llm_usage_tokens_check CHECK (
        input_tokens >= 0 AND output_tokens >= 0 AND cache_creation_input_tokens >= 0
        AND cache_read_input_tokens >= 0 AND web_search_requests >= 0 AND cost_usd >= 0
    ),
    CONSTRAINT llm_usage_call_unique UNIQUE (job_id, attempt, call_index)
);
CREATE INDEX IF NOT EXISTS llm_usage_related_id_idx ON llm_usage (related_id);
CREATE INDEX IF NOT EXISTS llm_usage_stage_created_idx ON llm_usage (stage, created_at);

-- updated_at triggers, created only when missing (CREATE TRIGGER has no IF NOT EXISTS).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['sector_analysis', 'sub_sector', 'stock', 'stock_analysis'] LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_trigger
            WHERE tgname = t || '_touch_updated_at' AND tgrelid = t::regclass
        ) THEN
            EXECUTE format(
                'CREATE TRIGGER %I BEFORE UPDATE ON %I '
                'FOR EACH ROW EXECUTE FUNCTION pipeline_touch_updated_at()',
                t || '_touch_updated_at', t
            );
        END IF;
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Version 2: cost budgets. A run has a budget in USD (NULL: none) and the money its model calls
-- spent and hold reserved; a call's estimate is reserved before it and settled after it
-- (`pipeline.budget`). A run a budget stopped ends `budget_exceeded` (`budget_exceeded_at` is
-- set by the first refusal). Columns and the CHECK are added in place on a version-1 database.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE sector_analysis ADD COLUMN IF NOT EXISTS budget_usd numeric(14, 8);
ALTER TABLE sector_analysis ADD COLUMN IF NOT EXISTS spent_usd numeric(14, 8) NOT NULL DEFAULT 0;
ALTER TABLE sector_analysis ADD COLUMN IF NOT EXISTS reserved_usd numeric(14, 8) NOT NULL DEFAULT 0;
ALTER TABLE sector_analysis ADD COLUMN IF NOT EXISTS budget_exceeded_at timestamptz;

DO $$
BEGIN
    -- The status CHECK of version 1 lacks 'budget_exceeded': replaced once, not at every run.
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'sector_analysis_status_check'
          AND conrelid = 'sector_analysis'::regclass
          AND pg_get_constraintdef(oid) LIKE '%budget_exceeded%'
    ) THEN
        ALTER TABLE sector_analysis DROP CONSTRAINT IF EXISTS sector_analysis_status_check;
        ALTER TABLE sector_analysis ADD CONSTRAINT sector_analysis_status_check CHECK (
            status IN ('researching', 'awaiting_approval', 'in_progress', 'completed', 'failed',
                       'budget_exceeded')
        );
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'sector_analysis_budget_check' AND conrelid = 'sector_analysis'::regclass
    ) THEN
        ALTER TABLE sector_analysis ADD CONSTRAINT sector_analysis_budget_check CHECK (
            (budget_usd IS NULL OR budget_usd >= 0) AND spent_usd >= 0 AND reserved_usd >= 0
        );
    END IF;
END
$$;

-- The organisation's spend per UTC day, against PIPELINE_DAILY_BUDGET_USD (a setting, not a
-- column: changing it applies at once). `org` is one name per deployment (PIPELINE_BUDGET_ORG).
CREATE TABLE IF NOT EXISTS budget_day (
    org          text NOT NULL,
    day          date NOT NULL,
    spent_usd    numeric(14, 8) NOT NULL DEFAULT 0,
    reserved_usd numeric(14, 8) NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org, day),
    CONSTRAINT budget_day_amounts_check CHECK (spent_usd >= 0 AND reserved_usd >= 0)
);

-- One row per reserved model call: what was held where, until it is settled (the real cost),
-- released (the call failed) or expired (its holder crashed; reclaimed after `expires_at`).
-- The run reference is cleared, not cascaded, so the day's reservation is still given back.
CREATE TABLE IF NOT EXISTS budget_reservation (
    id           bigserial PRIMARY KEY,
    run_id       uuid REFERENCES sector_analysis (id) ON DELETE SET NULL,
    org          text NOT NULL,
    day          date NOT NULL,
    job_id       text,
    attempt      int,
    call_index   int,
    stage        text,
    model        text NOT NULL,
    estimate_usd numeric(14, 8) NOT NULL,
    cost_usd     numeric(14, 8),
    state        text NOT NULL DEFAULT 'held',
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    CONSTRAINT budget_reservation_state_check
        CHECK (state IN ('held', 'settled', 'released', 'expired')),
    CONSTRAINT budget_reservation_amounts_check
        CHECK (estimate_usd >= 0 AND (cost_usd IS NULL OR cost_usd >= 0))
);
CREATE INDEX IF NOT EXISTS budget_reservation_run_idx ON budget_reservation (run_id);
CREATE INDEX IF NOT EXISTS budget_reservation_job_idx
    ON budget_reservation (job_id, attempt, call_index) WHERE state = 'held';
CREATE INDEX IF NOT EXISTS budget_reservation_expiry_idx
    ON budget_reservation (expires_at) WHERE state = 'held';

-- ---------------------------------------------------------------------------------------------
-- Version 3: subscription tiers. A run records its user's tier; every job of the run gets the
-- tier's priority and the user as its group (`pipeline.tiers`). Added in place on an older
-- database (its runs are 'free').
-- ---------------------------------------------------------------------------------------------
ALTER TABLE sector_analysis ADD COLUMN IF NOT EXISTS user_tier text NOT NULL DEFAULT 'free';

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'sector_analysis_user_tier_check'
          AND conrelid = 'sector_analysis'::regclass
    ) THEN
        ALTER TABLE sector_analysis ADD CONSTRAINT sector_analysis_user_tier_check CHECK (
            user_tier IN ('free', 'pro', 'enterprise')
        );
    END IF;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Version 4: cancelling a run (`pipeline.cancel`). A run may end `cancelled` (`cancelled_at` is
-- when); a job of it that was removed from its queue or stopped ends `cancelled` in job_status.
-- The two status CHECKs are replaced in place on a version-3 database (once: only when they
-- lack 'cancelled').
-- ---------------------------------------------------------------------------------------------
ALTER TABLE sector_analysis ADD COLUMN IF NOT EXISTS cancelled_at timestamptz;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'sector_analysis_status_check'
          AND conrelid = 'sector_analysis'::regclass
          AND pg_get_constraintdef(oid) LIKE '%cancelled%'
    ) THEN
        ALTER TABLE sector_analysis DROP CONSTRAINT IF EXISTS sector_analysis_status_check;
        ALTER TABLE sector_analysis ADD CONSTRAINT sector_analysis_status_check CHECK (
            status IN ('researching', 'awaiting_approval', 'in_progress', 'completed', 'failed',
                       'budget_exceeded', 'cancelled')
        );
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'job_status_status_check'
          AND conrelid = 'job_status'::regclass
          AND pg_get_constraintdef(oid) LIKE '%cancelled%'
    ) THEN
        ALTER TABLE job_status DROP CONSTRAINT IF EXISTS job_status_status_check;
        ALTER TABLE job_status ADD CONSTRAINT job_status_status_check
            CHECK (status IN ('waiting', 'active', 'completed', 'failed', 'cancelled'));
    END IF;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Version 5: signed webhooks (`pipeline.webhooks`). One row per try of one event (a message,
-- `msg_id`, is tried until the receiver answers 2xx or its attempts run out): the receiver's
-- URL without credentials or query, its status code or the error, how long the try took.
-- No foreign key to the run: the log outlives a deleted run.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS webhook_delivery (
    id          bigserial PRIMARY KEY,
    msg_id      text NOT NULL,
    event       text NOT NULL,
    run_id      uuid,
    url         text NOT NULL,
    attempt     int NOT NULL,
    status_code int,
    error       text,
    duration_ms double precision NOT NULL,
    delivered   boolean NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_delivery_attempt_check CHECK (attempt >= 1)
);
CREATE INDEX IF NOT EXISTS webhook_delivery_run_idx ON webhook_delivery (run_id, created_at);
CREATE INDEX IF NOT EXISTS webhook_delivery_created_idx ON webhook_delivery (created_at);

INSERT INTO schema_version (version) VALUES (5) ON CONFLICT (version) DO NOTHING;
