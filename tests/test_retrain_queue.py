"""The retrain queue on PGMQ: install, triggers, de-duplication, claims and leases, and who may touch it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from uuid import UUID, uuid4

import orjson
import psycopg
import pytest

from fhir_samples import bundle, cgm
from glucokit.db.sessions import Connection, Purpose, as_anon, as_user, as_worker
from glucokit.fhir.ingest import Ingest, Limits
from glucokit.jobs.runner import Shard
from glucokit.modelops import retrain_queue
from glucokit.modelops.retrain_queue import Claim, ClaimLost, Outcome, RateLimited, RetryOutcome, Trigger
from glucokit.tooling import migrate
from glucokit.units import CARBOHYDRATE_CODE
from owners import Owner

NEW_DATA = 288  # private.retrain_config defaults
INITIAL = 576


@pytest.fixture
def db(database_url: str) -> Iterator[Connection]:
    """An autocommit connection as the database owner: each `as_*` block is one committed transaction."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


def readings(db: Connection, owner: Owner, count: int, *, start: int = 0) -> None:
    """``count`` CGM readings of the owner's person, 5 minutes apart, in one INSERT statement as the owner."""
    with as_user(db, owner.user):
        db.execute(
            """insert into public.observation (person_id, code, value, unit, effective_at, source_system, source_id)
               select %(person)s, '99504-3', 120, 'mg/dL',
                 timestamptz '2026-10-01 00:00Z' + make_interval(mins => 5 * n), 'urn:test', 'r-' || n
               from generate_series(%(start)s, %(start)s + %(count)s - 1) as n""",
            {"person": owner.person, "start": start, "count": count},
        )


def with_model(db: Connection, owner: Owner, *, age: timedelta = timedelta(0)) -> None:
    """An active model of the owner's person, trained ``age`` ago (as a worker would register it)."""
    db.execute(
        """with run as (
             insert into public.training_run (person_id, trigger, status, started_at, finished_at, requested_at)
             values (%(person)s, 'initial', 'succeeded', now() - %(age)s, now() - %(age)s, now() - %(age)s)
             returning id
           )
           insert into public.ml_model (person_id, version, algorithm, training_run_id, data_from, data_to, stage,
             trained_at)
           select %(person)s, '1.0.0', 'ridge', run.id, now() - interval '30 days', now() - %(age)s, 'active',
             now() - %(age)s
           from run""",
        {"person": owner.person, "age": age},
    )


def requests(db: Connection, owner: Owner) -> list[tuple[str, str, int, int]]:
    """(trigger, status, duplicates, msg_id) of the person's requests, oldest first."""
    return [
        (str(trigger), str(status), int(str(duplicates)), int(str(msg_id)))
        for trigger, status, duplicates, msg_id in db.execute(
            "select trigger, status, duplicates, msg_id from public.retrain_request where person_id = %s "
            "order by requested_at, msg_id",
            (owner.person,),
        )
    ]


def messages(db: Connection, owner: Owner) -> int:
    """The person's messages in the queue, visible or not."""
    row = db.execute(
        "select count(*) from pgmq.q_glucokit_retrain where message ->> 'person_id' = %s", (str(owner.person),)
    ).fetchone()
    return int(str(row[0])) if row else 0


def read_ids(db: Connection, vt_seconds: int) -> dict[int, retrain_queue.Message]:
    """Every visible message, as a worker reads it (messages of other tests are hidden for vt_seconds too)."""
    with as_worker(db, None):
        return {message.msg_id: message for message in retrain_queue.read(db, vt_seconds, 1000)}


def enqueue(db: Connection, owner: Owner, trigger: Trigger = Trigger.PERFORMANCE) -> int:
    """Queues a retrain as an unscoped worker; its message id."""
    with as_worker(db, None):
        request_id = retrain_queue.enqueue(db, owner.person, trigger, "test")
    row = db.execute("select msg_id from public.retrain_request where id = %s", (request_id,)).fetchone()
    assert row is not None
    return int(str(row[0]))


def claim(db: Connection, msg_id: int, lease_seconds: int = 60) -> Claim:
    with as_worker(db, None):
        return retrain_queue.claim(db, msg_id, lease_seconds)


# --- install ---------------------------------------------------------------------


@pytest.mark.full_schema
def test_pgmq_is_installed_once_and_the_queue_exists(new_database: Callable[[], str]) -> None:
    url = new_database()
    first = migrate.migrate(url)
    assert first.pgmq == migrate.PGMQ_INSTALLED
    assert len(first.applied) == len(migrate.local_migrations())
    again = migrate.migrate(url)
    assert (again.pgmq, again.applied) == (migrate.PGMQ_PRESENT, [])
    with psycopg.connect(url) as conn:
        queues = [row[0] for row in conn.execute("select queue_name from pgmq.list_queues()")]
        assert queues == ["glucokit_retrain"]
        # The queue's tables: row-level security on, no privilege for the API roles.
        rows = conn.execute(
            """select c.relname, c.relrowsecurity,
                 has_table_privilege('anon', c.oid, 'select'), has_table_privilege('authenticated', c.oid, 'insert')
               from pg_class c
               where c.relnamespace = 'pgmq'::regnamespace and c.relkind = 'r' and c.relname like '%%glucokit_retrain'
               order by 1"""
        ).fetchall()
        assert rows == [("a_glucokit_retrain", True, False, False), ("q_glucokit_retrain", True, False, False)]


# --- enqueue triggers --------------------------------------------------------------


def test_new_data_queues_once_per_threshold_and_once_while_queued(db: Connection, owner: Owner) -> None:
    with_model(db, owner)
    readings(db, owner, NEW_DATA - 1)
    assert requests(db, owner) == []
    readings(db, owner, 1, start=NEW_DATA - 1)
    [(trigger, status, duplicates, msg_id)] = requests(db, owner)
    assert (trigger, status, duplicates) == ("new_data", "queued", 0)
    # Below the next threshold: nothing; at it, the waiting request absorbs the duplicate.
    readings(db, owner, NEW_DATA - 1, start=NEW_DATA)
    assert requests(db, owner) == [("new_data", "queued", 0, msg_id)]
    readings(db, owner, 1, start=2 * NEW_DATA - 1)
    assert requests(db, owner) == [("new_data", "queued", 1, msg_id)]
    assert messages(db, owner) == 1
    # A completed retrain restarts the count from its claim, and names its training run.
    held = claim(db, msg_id)
    run = db.execute("select id from public.training_run where person_id = %s", (owner.person,)).fetchone()
    assert run is not None
    with as_worker(db, None):
        assert retrain_queue.complete(db, held, UUID(str(run[0])))
    assert (
        db.execute("select training_run_id from public.retrain_request where msg_id = %s", (msg_id,)).fetchone() == run
    )
    readings(db, owner, NEW_DATA - 1, start=2 * NEW_DATA)
    assert [status for _, status, _, _ in requests(db, owner)] == ["done"]
    readings(db, owner, 1, start=3 * NEW_DATA - 1)
    assert [(t, s) for t, s, _, _ in requests(db, owner)] == [("new_data", "done"), ("new_data", "queued")]
    assert messages(db, owner) == 1


def test_only_cgm_readings_count(db: Connection, owner: Owner) -> None:
    with_model(db, owner)
    with as_user(db, owner.user):
        db.execute(
            """insert into public.observation (person_id, code, value, unit, effective_at, source_system, source_id)
               select %s, %s, 1, 'g', timestamptz '2026-10-01 00:00Z' + make_interval(mins => n), 'urn:test',
                 'carbs-' || n
               from generate_series(1, %s) as n""",
            (owner.person, CARBOHYDRATE_CODE, NEW_DATA * 2),
        )
    assert requests(db, owner) == []


def test_initial_training_needs_two_days_of_readings_from_ingest(db: Connection, owner: Owner) -> None:
    def ingest(first: int, count: int) -> None:
        document = bundle(*(cgm(n) for n in range(first, first + count)))
        Ingest([db], user_id=owner.user, person_id=owner.person, limits=Limits(batch_size=200)).document(
            orjson.dumps(document), source="test.json"
        )

    ingest(0, INITIAL - 1)  # three batches, three INSERT statements
    assert requests(db, owner) == []
    ingest(0, INITIAL - 1)  # the same readings again: nothing new arrives
    assert requests(db, owner) == []
    ingest(INITIAL - 1, 1)
    [(trigger, status, _, _)] = requests(db, owner)
    assert (trigger, status) == ("initial", "queued")


def test_scheduled_sweep_queues_persons_with_old_models(db: Connection, make_owner: Callable[[], Owner]) -> None:
    stale, fresh = make_owner(), make_owner()
    with_model(db, stale, age=timedelta(days=8))
    with_model(db, fresh, age=timedelta(days=1))
    with as_worker(db, None):
        assert retrain_queue.enqueue_due(db, timedelta(days=7)) >= 1
    assert [(t, s) for t, s, _, _ in requests(db, stale)] == [("scheduled", "queued")]
    assert requests(db, fresh) == []
    # Not again while it waits, nor within max_age after it failed.
    with as_worker(db, None):
        retrain_queue.enqueue_due(db, timedelta(days=7))
    [(_, _, duplicates, msg_id)] = requests(db, stale)
    assert duplicates == 0
    held = claim(db, msg_id)
    with as_worker(db, None):
        retrain_queue.fail(db, held, "no luck")
        retrain_queue.enqueue_due(db, timedelta(days=7))
    assert [(t, s) for t, s, _, _ in requests(db, stale)] == [("scheduled", "failed")]
    # A scoped worker transaction cannot sweep.
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_worker(db, stale.person, Purpose.TRAINING, "test"):
        retrain_queue.enqueue_due(db, timedelta(days=7))


def test_the_performance_hook_is_scoped(db: Connection, make_owner: Callable[[], Owner]) -> None:
    mine, other = make_owner(), make_owner()
    with as_worker(db, mine.person, Purpose.TRAINING, "test"):
        retrain_queue.enqueue(db, mine.person, Trigger.PERFORMANCE, "rmse_30 up 20 %")
    assert [(t, s) for t, s, _, _ in requests(db, mine)] == [("performance", "queued")]
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_worker(db, mine.person, Purpose.TRAINING, "test"):
        retrain_queue.enqueue(db, other.person, Trigger.PERFORMANCE)


def test_owners_request_retrains_of_their_own_persons_once_an_hour(
    db: Connection, make_owner: Callable[[], Owner]
) -> None:
    alice, bob = make_owner(), make_owner()
    with as_user(db, alice.user):
        request_id = retrain_queue.request(db, alice.person)
        # The owner sees it.
        assert db.execute(
            "select trigger, status from public.retrain_request where id = %s", (request_id,)
        ).fetchone() == (
            "user_request",
            "queued",
        )
    with pytest.raises(RateLimited, match=r"already requested at .* Try again after "), as_user(db, alice.user):
        retrain_queue.request(db, alice.person)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not one of your persons"), as_user(db, bob.user):
        retrain_queue.request(db, alice.person)
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_anon(db):
        retrain_queue.request(db, alice.person)
    with as_user(db, bob.user):
        assert db.execute(
            "select count(*) from public.retrain_request where person_id = %s", (alice.person,)
        ).fetchone() == (0,)
    # An hour later: allowed again, and absorbed by the request still waiting.
    db.execute(
        "update private.retrain_state set user_requested_at = now() - interval '61 minutes' where person_id = %s",
        (alice.person,),
    )
    with as_user(db, alice.user):
        assert retrain_queue.request(db, alice.person) == request_id
    assert [(t, s, d) for t, s, d, _ in requests(db, alice)] == [("user_request", "queued", 1)]


# --- claims and leases -------------------------------------------------------------


def test_a_read_message_is_hidden_for_its_visibility_timeout(db: Connection, owner: Owner) -> None:
    msg_id = enqueue(db, owner)
    first = read_ids(db, vt_seconds=1)[msg_id]
    assert (first.person_id, first.trigger, first.read_ct, first.status) == (
        owner.person,
        Trigger.PERFORMANCE,
        1,
        "queued",
    )
    assert first.body["person_id"] == str(owner.person)
    assert msg_id not in read_ids(db, vt_seconds=1)
    time.sleep(1.1)
    assert read_ids(db, vt_seconds=30)[msg_id].read_ct == 2


def test_one_person_never_has_two_retrains_running(db: Connection, owner: Owner) -> None:
    first = enqueue(db, owner)
    held = claim(db, first, lease_seconds=60)
    assert (held.outcome, held.attempt, held.person_id) == (Outcome.CLAIMED, 1, owner.person)
    # Its message stays hidden for the lease; claiming it again is refused.
    assert first not in read_ids(db, vt_seconds=1)
    assert claim(db, first).outcome is Outcome.BUSY
    # New work for the person waits in a second request, which a second worker cannot start.
    second = enqueue(db, owner)
    assert second != first
    waiting = claim(db, second)
    assert (waiting.outcome, waiting.lease_expires_at) == (Outcome.BUSY, held.lease_expires_at)
    assert second not in read_ids(db, vt_seconds=1)  # deferred to the end of the first lease
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(
            "update public.retrain_request set status = 'running', attempts = 1, started_at = clock_timestamp(),"
            " lease_expires_at = clock_timestamp() + interval '1 minute' where msg_id = %s",
            (second,),
        )
    # Completing the first makes the second visible at once, and it can be claimed.
    with as_worker(db, None):
        assert retrain_queue.complete(db, held)
    assert second in read_ids(db, vt_seconds=30)
    assert claim(db, second).claimed
    assert [s for _, s, _, _ in requests(db, owner)] == ["done", "running"]


def test_two_workers_claiming_one_message_at_once_get_one_claim(
    database_url: str, db: Connection, owner: Owner
) -> None:
    msg_id = enqueue(db, owner)
    outcomes: list[Outcome] = []
    with psycopg.connect(database_url, autocommit=True) as other:
        with as_worker(db, None):
            assert retrain_queue.claim(db, msg_id).claimed  # not committed yet
            racer = threading.Thread(target=lambda: outcomes.append(claim(other, msg_id).outcome))
            racer.start()
            racer.join(0.3)
            assert racer.is_alive()  # waits for the person's turn
        racer.join(5)
    assert outcomes == [Outcome.BUSY]


def test_a_dead_workers_claim_is_taken_over_after_its_lease(db: Connection, owner: Owner) -> None:
    msg_id = enqueue(db, owner)
    assert msg_id in read_ids(db, vt_seconds=1)
    dead = claim(db, msg_id, lease_seconds=1)
    assert dead.claimed
    # The worker dies: nothing completes the claim. Hidden for the lease, then back.
    assert msg_id not in read_ids(db, vt_seconds=1)
    time.sleep(1.1)
    assert msg_id in read_ids(db, vt_seconds=30)
    with as_worker(db, None):
        metrics = retrain_queue.metrics(db)
    assert min(metrics.running, metrics.expired_leases, metrics.queue_length) >= 1
    taken = claim(db, msg_id, lease_seconds=60)
    assert (taken.outcome, taken.attempt, taken.request_id) == (Outcome.CLAIMED, 2, dead.request_id)
    # The dead worker's late result is refused; the live one's is kept.
    with pytest.raises(ClaimLost, match="no longer held by attempt 1"), as_worker(db, None):
        retrain_queue.complete(db, dead)
    with as_worker(db, None):
        assert taken.lease_expires_at is not None
        assert retrain_queue.extend(db, taken, 120) > taken.lease_expires_at
        assert retrain_queue.complete(db, taken)
    assert [s for _, s, _, _ in requests(db, owner)] == ["done"]
    assert messages(db, owner) == 0


def test_a_request_no_worker_finishes_is_given_up(db: Connection, owner: Owner) -> None:
    msg_id = enqueue(db, owner)
    db.execute(
        "update public.retrain_request set status = 'running', attempts = 3, started_at = clock_timestamp(),"
        " lease_expires_at = clock_timestamp() - interval '1 second' where msg_id = %s",
        (msg_id,),
    )
    assert claim(db, msg_id).outcome is Outcome.EXHAUSTED
    row = db.execute("select status, error from public.retrain_request where msg_id = %s", (msg_id,)).fetchone()
    assert row == ("failed", "gave up after 3 attempts: no worker finished it")
    assert messages(db, owner) == 0
    assert db.execute("select count(*) from pgmq.a_glucokit_retrain where msg_id = %s", (msg_id,)).fetchone() == (1,)


def test_a_failed_retrain_is_archived_and_shown_to_the_owner(db: Connection, owner: Owner) -> None:
    msg_id = enqueue(db, owner)
    held = claim(db, msg_id)
    with as_worker(db, None):
        assert retrain_queue.fail(db, held, "not enough data")
    with as_user(db, owner.user):
        assert db.execute(
            "select status, error, finished_at >= started_at from public.retrain_request where msg_id = %s", (msg_id,)
        ).fetchone() == ("failed", "not enough data", True)
    assert db.execute("select count(*) from pgmq.a_glucokit_retrain where msg_id = %s", (msg_id,)).fetchone() == (1,)


def test_the_database_shards_persons_as_the_jobs_do(db: Connection) -> None:
    persons = [UUID(int=0), UUID(int=2**128 - 1), UUID(int=2**64 + 7), *(uuid4() for _ in range(300))]
    for count in (1, 2, 3, 7, 2**31 - 1):
        rows = db.execute(
            "select private.retrain_shard(p, %s) from unnest(%s::uuid[]) as p", (count, persons)
        ).fetchall()  # fmt: skip
        assert [row[0] for row in rows] == [person.int % count for person in persons]
        assert all(Shard(int(str(row[0])), count).owns(person) for row, person in zip(rows, persons, strict=True))


def test_peeking_shows_one_shard_and_hides_nothing(db: Connection, make_owner: Callable[[], Owner]) -> None:
    owners = [make_owner() for _ in range(6)]
    sent = {owner.person: enqueue(db, owner) for owner in owners}
    for index in (0, 1):
        with as_worker(db, None):
            seen = retrain_queue.peek(db, index, 2, 1000)
        mine = {message.person_id: message.msg_id for message in seen if message.person_id in sent}
        assert mine == {person: msg_id for person, msg_id in sent.items() if person.int % 2 == index}
        assert [message.msg_id for message in seen] == sorted(message.msg_id for message in seen)
    # Looking changed nothing: every message is still visible, never read.
    visible = read_ids(db, vt_seconds=1)
    assert {visible[msg_id].read_ct for msg_id in sent.values()} == {1}
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="shard 2 of 2 does not exist"), as_worker(db, None):
        retrain_queue.peek(db, 2, 2, 10)


def test_a_retry_waits_in_the_persons_waiting_request(db: Connection, owner: Owner) -> None:
    first = enqueue(db, owner)
    held = claim(db, first)
    second = enqueue(db, owner)  # new work arrives while the first one runs
    with as_worker(db, None):
        retried = retrain_queue.retry(db, held, "RuntimeError('store down')")
    assert retried.outcome is RetryOutcome.RETRYING
    rows = db.execute(
        "select msg_id, status::text, attempts, duplicates, error from public.retrain_request where person_id = %s"
        " order by msg_id",
        (owner.person,),
    ).fetchall()
    assert [row[1:4] for row in rows] == [("failed", 1, 0), ("queued", 0, 1)]
    assert [row[0] for row in rows] == [first, second]
    error = str(rows[0][4])
    assert rows[1][4] is None
    assert error.startswith("attempt 1 failed: RuntimeError('store down'); request ")
    assert error.endswith(", already waiting, retries it")
    # The waiting request waits out the backoff, and the failed attempt's message is archived.
    assert second not in read_ids(db, vt_seconds=1)
    assert messages(db, owner) == 1
    with as_worker(db, None), pytest.raises(ClaimLost):
        retrain_queue.retry(db, held, "again")


def test_a_retry_after_the_last_attempt_fails_for_good(db: Connection, owner: Owner) -> None:
    msg_id = enqueue(db, owner)
    db.execute("update public.retrain_request set attempts = 2 where msg_id = %s", (msg_id,))
    held = claim(db, msg_id)
    assert held.attempt == 3
    with as_worker(db, None):
        assert retrain_queue.retry(db, held, "") == retrain_queue.Retry(RetryOutcome.FAILED, None)
    row = db.execute("select status::text, error from public.retrain_request where msg_id = %s", (msg_id,)).fetchone()
    assert row == ("failed", "gave up after 3 attempts; the last one failed: failed without a message")
    assert db.execute("select count(*) from pgmq.a_glucokit_retrain where msg_id = %s", (msg_id,)).fetchone() == (1,)


def test_a_message_without_a_live_request_is_dropped(db: Connection) -> None:
    row = db.execute("select pgmq.send('glucokit_retrain', '{\"stray\": true}')").fetchone()
    assert row is not None
    stray = int(str(row[0]))
    dropped = claim(db, stray)
    assert (dropped.outcome, dropped.request_id) == (Outcome.DROPPED, None)
    assert db.execute("select count(*) from pgmq.q_glucokit_retrain where msg_id = %s", (stray,)).fetchone() == (0,)


# --- who may touch the queue ---------------------------------------------------------

DIRECT = [
    "select * from pgmq.read('glucokit_retrain', 0, 1)",
    "select pgmq.send('glucokit_retrain', '{}')",
    "select count(*) from pgmq.q_glucokit_retrain",
    "select pgmq.delete('glucokit_retrain', 1::bigint)",
    "select * from private.read_retrains(0, 1)",
    "select * from private.claim_retrain(1)",
    "select private.complete_retrain(1, 1)",
    "select private.enqueue_retrain('{person}', 'performance')",
    "select private.enqueue_due_retrains(interval '1 day')",
    "select * from private.peek_retrains(0, 1, 10)",
    "select * from private.retry_retrain(1, 1, 'error')",
    "insert into public.retrain_request (person_id, trigger, msg_id) values ('{person}', 'user_request', -1)",
    "update public.retrain_request set status = 'done'",
]


@pytest.mark.parametrize("statement", DIRECT)
def test_users_cannot_touch_the_queue(db: Connection, owner: Owner, statement: str) -> None:
    text = statement.replace("{person}", str(owner.person))
    for scoped in (as_anon(db), as_user(db, owner.user)):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), scoped:
            db.execute(text.encode())


@pytest.mark.parametrize("statement", DIRECT[:4])
def test_workers_reach_pgmq_only_through_the_queue_functions(db: Connection, owner: Owner, statement: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_worker(db, None):
        db.execute(statement.encode())
