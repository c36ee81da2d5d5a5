"""Storage conformance for templates (SPEC section 16): every backend keeps versions alike.

Memory, a real SQLite file and a real redis-server: immutable numbered versions, the same
content making no version, archive and restore by a later put, numbers never reused,
and two concurrent puts of different content making two distinct versions.
"""

from __future__ import annotations

import sqlite3
import threading

import pytest

from sms_service.storage import open_storage
from sms_service.storage import sqlite as sqlite_backend


@pytest.fixture
def storage(storage_uri):
    store = open_storage(storage_uri)
    yield store
    store.close()


def test_a_first_put_is_version_one_and_the_same_content_makes_no_version(storage):
    assert storage.template_put("otp", "A") == (1, True)
    assert storage.template_put("otp", "A") == (1, False)
    assert storage.template_put("otp", "B") == (2, True)
    assert storage.template_put("otp", "B") == (2, False)
    # Back to older content: a new version, never the old number.
    assert storage.template_put("otp", "A") == (3, True)
    number, content, created, archived = storage.template_version("otp", None)
    assert (number, content, archived) == (3, "A", False)
    assert created > 1_600_000_000_000  # Unix milliseconds
    assert storage.template_version("otp", 2)[:2] == (2, "B")
    assert storage.template_version("otp", 4) is None
    assert storage.template_version("nope", None) is None


def test_versions_come_oldest_first_with_the_archived_flag(storage):
    for content in ("one", "two", "three"):
        storage.template_put("welcome", content)
    archived, versions = storage.template_versions("welcome")
    assert archived is False
    assert [(n, c) for n, c, _ in versions] == [(1, "one"), (2, "two"), (3, "three")]
    assert all(isinstance(t, int) for _, _, t in versions)
    assert storage.template_versions("nope") is None


def test_archive_keeps_versions_and_a_later_put_even_of_the_same_content_is_the_next_number(storage):
    storage.template_put("otp", "A")
    storage.template_put("otp", "B")
    assert storage.template_archive("otp") is True
    assert storage.template_archive("otp") is False  # already archived
    assert storage.template_archive("nope") is False
    assert storage.template_version("otp", None)[3] is True
    assert storage.template_version("otp", 1)[:2] == (1, "A")  # still readable
    assert storage.template_versions("otp")[0] is True
    assert storage.template_put("otp", "B") == (3, True)  # the same content brings it back
    assert storage.template_version("otp", None)[::3] == (3, False)
    assert storage.template_put("otp", "B") == (3, False)


def test_names_list_every_template_archived_or_not(storage):
    storage.template_put("a", "x")
    storage.template_put("b", "y")
    storage.template_archive("b")
    assert sorted(storage.template_names()) == ["a", "b"]


def test_restore_recreates_exact_numbers_only_for_a_new_name(storage):
    versions = [(1, "one", 1_700_000_000_000), (4, "four", 1_700_000_100_000)]
    assert storage.template_restore("old", versions, archived=True) is True
    assert storage.template_versions("old") == (True, versions)
    assert storage.template_restore("old", [(1, "other", 1)], archived=False) is False
    assert storage.template_versions("old") == (True, versions)
    assert "old" in storage.template_names()
    # The next put continues after the highest number, never reusing one.
    assert storage.template_put("old", "four") == (5, True)


def test_templates_never_expire_with_the_sweep(storage, storage_uri):
    storage.template_put("otp", "A")
    if storage_uri.startswith("sqlite"):
        sqlite_backend.SqliteStorage._sweep(storage._conn(), 10 ** 15)
    assert storage.template_version("otp", None)[:2] == (1, "A")


def test_concurrent_puts_of_different_content_make_distinct_versions(storage):
    # Many rounds of two puts at once: each gets its own number, none reused or lost.
    for round_ in range(15):
        name = f"race{round_}"
        barrier = threading.Barrier(2)
        answers = []

        def put(content, name=name, barrier=barrier):
            barrier.wait()
            answers.append((content, storage.template_put(name, content)))

        threads = [threading.Thread(target=put, args=(content,)) for content in ("left", "right")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        numbers = sorted(number for _, (number, created) in answers)
        assert numbers == [1, 2] and all(created for _, (_, created) in answers), answers
        _, versions = storage.template_versions(name)
        assert {(n, c) for n, c, _ in versions} == {(number, content) for content, (number, _) in answers}


def test_concurrent_puts_from_two_connections_of_one_shared_store(shared_storage_uri):
    first, second = open_storage(shared_storage_uri), open_storage(shared_storage_uri)
    try:
        barrier = threading.Barrier(2)
        answers = []

        def put(store, content):
            barrier.wait()
            answers.append(store.template_put("shared", content))

        threads = [threading.Thread(target=put, args=args) for args in ((first, "x"), (second, "y"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(answers) == [(1, True), (2, True)]
        assert [n for n, _, _ in second.template_versions("shared")[1]] == [1, 2]
    finally:
        first.close()
        second.close()


def test_sqlite_schema_2_file_upgrades_keeping_its_rows(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE suppressions (number TEXT PRIMARY KEY, source TEXT NOT NULL, "
                 "since INTEGER NOT NULL) WITHOUT ROWID")
    conn.execute("INSERT INTO suppressions VALUES ('+15558675310', 'admin', 1700000000000)")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    store = open_storage(f"sqlite:///{path}")
    try:
        assert store.suppression_get("+15558675310") == ("admin", 1700000000000)
        assert store.template_put("otp", "A") == (1, True)
        (version,) = store._conn().execute("PRAGMA user_version").fetchone()
        assert version == sqlite_backend.SCHEMA_VERSION == 3
    finally:
        store.close()
