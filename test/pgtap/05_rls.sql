-- Row-level security: a role sees and changes the streams it owns (or is a
-- member of the owner of), and only their batches and dead letters.  The
-- offsets are not narrowed: a consumer group is shared, as on the broker.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET search_path = public, tap;
BEGIN;
SELECT * FROM no_plan();

SELECT is(ARRAY(SELECT relname::text || ' ' || relrowsecurity || ' ' || relforcerowsecurity FROM pg_class
                WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY relname COLLATE "C"),
          ARRAY['rmq_batch true false', 'rmq_dead_letter true false', 'rmq_offset false false', 'rmq_stream true false'],
          'row-level security on rmq_stream, rmq_batch and rmq_dead_letter, not rmq_offset; not forced on the owner');

SELECT policies_are('public', 'rmq_stream', ARRAY['rmq_stream_owner']);
SELECT policies_are('public', 'rmq_batch', ARRAY['rmq_batch_owner']);
SELECT policies_are('public', 'rmq_dead_letter', ARRAY['rmq_dead_letter_owner']);
SELECT policies_are('public', 'rmq_offset', '{}'::name[]);
-- Each policy is for every command and every role (PUBLIC).  pgTAP 1.2's
-- policy_roles_are looks roles up in pg_roles, which has no PUBLIC: it must
-- see no named role, and pg_policies.roles says PUBLIC.
CREATE TEMP TABLE pol (t name, p name);
INSERT INTO pol VALUES ('rmq_stream', 'rmq_stream_owner'), ('rmq_batch', 'rmq_batch_owner'),
                       ('rmq_dead_letter', 'rmq_dead_letter_owner');
SELECT policy_cmd_is('public', t, p, 'all', format('%s: for every command', p)) FROM pol;
SELECT policy_roles_are('public', t, p, '{}'::name[], format('%s: for no role in particular', p)) FROM pol;
SELECT is((SELECT roles FROM pg_policies WHERE schemaname = 'public' AND tablename = t AND policyname = p),
          '{public}'::name[], format('%s: for PUBLIC', p)) FROM pol;
SELECT is(ARRAY(SELECT tablename || ': ' || permissive || ' USING ' || regexp_replace(qual, '\s+', ' ', 'g')
                       || ' CHECK ' || regexp_replace(with_check, '\s+', ' ', 'g')
                FROM pg_policies WHERE schemaname = 'public' ORDER BY tablename COLLATE "C"),
          ARRAY['rmq_batch: PERMISSIVE USING (EXISTS ( SELECT 1 FROM rmq_stream s WHERE (s.name = rmq_batch.stream))) CHECK (EXISTS ( SELECT 1 FROM rmq_stream s WHERE (s.name = rmq_batch.stream)))',
                'rmq_dead_letter: PERMISSIVE USING (EXISTS ( SELECT 1 FROM rmq_stream s WHERE (s.name = rmq_dead_letter.stream))) CHECK (EXISTS ( SELECT 1 FROM rmq_stream s WHERE (s.name = rmq_dead_letter.stream)))',
                'rmq_stream: PERMISSIVE USING pg_has_role(CURRENT_USER, (owner)::oid, ''USAGE''::text) CHECK pg_has_role(CURRENT_USER, (owner)::oid, ''USAGE''::text)'],
          'the policies: a stream''s owner (or a member of it); a batch or dead letter of a visible stream');

-- What that means for two roles and a member of one of them.  Rows are
-- made as each role; what a role sees is kept in a setting, read back as
-- the superuser (pgTAP's own state is not theirs to write).
CREATE ROLE rmq_pgtap_a NOLOGIN;
CREATE ROLE rmq_pgtap_b NOLOGIN;
CREATE ROLE rmq_pgtap_a_member NOLOGIN IN ROLE rmq_pgtap_a;
CREATE TABLE rmq_pgtap_t (body bytea);
GRANT INSERT ON rmq_pgtap_t TO PUBLIC;

SET ROLE rmq_pgtap_a;
INSERT INTO rmq_stream (name, topic, consumer_group, target) VALUES ('pgtap_a', 't', 'g_a', 'public.rmq_pgtap_t');
INSERT INTO rmq_batch (stream, worker, started_at, rows, bytes, ranges, end_reason)
VALUES ('pgtap_a', 0, now(), 1, 1, '[]', 'rows');
INSERT INTO rmq_dead_letter (stream, topic, broker, queue_id, queue_offset, error, policy)
VALUES ('pgtap_a', 't', 'b', 0, 0, 'e', 'skip');
INSERT INTO rmq_offset (consumer_group, topic, broker, queue_id, next_offset) VALUES ('g_a', 't', 'b', 0, 1);
SET ROLE rmq_pgtap_b;
INSERT INTO rmq_stream (name, topic, consumer_group, target) VALUES ('pgtap_b', 't', 'g_b', 'public.rmq_pgtap_t');
DO $$ BEGIN
    PERFORM set_config('rmq_pgtap.b_sees', (SELECT string_agg(name, ',' ORDER BY name) FROM rmq_stream)
        || ' ' || (SELECT count(*) FROM rmq_batch) || ' ' || (SELECT count(*) FROM rmq_dead_letter)
        || ' ' || (SELECT count(*) FROM rmq_offset), true);
    UPDATE rmq_stream SET state = 'paused' WHERE name = 'pgtap_a';
    DELETE FROM rmq_stream WHERE name = 'pgtap_a';
    BEGIN
        INSERT INTO rmq_stream (name, topic, consumer_group, target, owner)
        VALUES ('pgtap_b_as_a', 't', 'g', 'public.rmq_pgtap_t', 'rmq_pgtap_a');
        PERFORM set_config('rmq_pgtap.b_as_a', 'allowed', true);
    EXCEPTION WHEN insufficient_privilege THEN
        PERFORM set_config('rmq_pgtap.b_as_a', SQLSTATE, true);
    END;
    BEGIN
        INSERT INTO rmq_batch (stream, worker, started_at, rows, bytes, ranges, end_reason)
        VALUES ('pgtap_a', 0, now(), 1, 1, '[]', 'rows');
        PERFORM set_config('rmq_pgtap.b_batch_a', 'allowed', true);
    EXCEPTION WHEN insufficient_privilege THEN
        PERFORM set_config('rmq_pgtap.b_batch_a', SQLSTATE, true);
    END;
END $$;
SET ROLE rmq_pgtap_a_member;
DO $$ BEGIN
    PERFORM set_config('rmq_pgtap.member_sees', (SELECT string_agg(name, ',' ORDER BY name) FROM rmq_stream)
        || ' ' || (SELECT count(*) FROM rmq_batch) || ' ' || (SELECT count(*) FROM rmq_dead_letter), true);
END $$;
RESET ROLE;

SELECT is(current_setting('rmq_pgtap.b_sees'), 'pgtap_b 0 0 1',
          'another role sees its own stream only, none of the other''s batches or dead letters, but the shared offsets');
SELECT is((SELECT state FROM rmq_stream WHERE name = 'pgtap_a'), 'running',
          'it cannot change or delete the other''s stream');
SELECT is(current_setting('rmq_pgtap.b_as_a'), '42501', 'it cannot make a stream owned by another role');
SELECT is(current_setting('rmq_pgtap.b_batch_a'), '42501', 'it cannot record a batch of the other''s stream');
SELECT is(current_setting('rmq_pgtap.member_sees'), 'pgtap_a 1 1',
          'a member of the owner sees the owner''s stream, batches and dead letters');
SELECT is((SELECT string_agg(name || ':' || owner, ',' ORDER BY name) FROM rmq_stream),
          'pgtap_a:rmq_pgtap_a,pgtap_b:rmq_pgtap_b', 'the superuser sees both; owner defaults to the creating role');

SELECT * FROM finish();
ROLLBACK;
