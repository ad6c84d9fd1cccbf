"""Logins, CSRF tokens and the login throttle hold across replicas (two servers on one store) and restarts, and the
throttle cannot be beaten by trying many times at once."""

import math
import threading
import time

import httpx
import pytest

from tests.conftest import start_server
from tests.dashboard_support import EMAIL, PASSWORD, add_account, csrf_of, log_in


@pytest.fixture
def replicas(engine, settings):
    """Two servers on one store, each with a data directory of its own, as two machines would have."""
    add_account(engine)
    servers = [start_server(settings.model_copy(update={"data_dir": settings.data_dir / name, "replica": name,
                                                        "database_url": settings.database_url}))
               for name in ("a", "b")]
    yield servers
    for server in servers:
        server.stop()


def test_a_login_on_one_replica_is_good_on_the_other(replicas):
    first, second = replicas
    with httpx.Client(base_url=first.url, timeout=30) as browser:
        assert log_in(browser).status_code == 303
        cookies = browser.cookies
        form_token = csrf_of(browser.get("/dashboard/exports").text)
    with httpx.Client(base_url=second.url, cookies=cookies, timeout=30) as same_browser:
        assert same_browser.get("/dashboard").status_code == 200
        # A form made by the first replica is accepted by the second: the CSRF key is shared too.
        logged_out = same_browser.post("/logout", data={"csrf": form_token})
        assert logged_out.status_code == 303
        assert same_browser.get("/dashboard").status_code == 303  # logged out everywhere


def test_failures_on_one_replica_throttle_the_other(replicas):
    first, second = replicas
    with httpx.Client(base_url=first.url, timeout=30) as browser:
        answers = [log_in(browser, password="guess") for _ in range(11)]
        assert [answer.status_code for answer in answers] == [401] * 11  # ten free, and the one that went over
        # Guess on until the first replica makes this address wait over a second (the first waits are a second
        # or two, partly spent checking the password that went over): long enough to ask the second replica.
        for _ in range(20):
            answer = log_in(browser, password="guess")
            if answer.status_code == 429 and int(answer.headers["Retry-After"]) >= 2:
                break
        else:
            pytest.fail("the first replica never made this address wait")
    with httpx.Client(base_url=second.url, timeout=30) as browser:
        refused = log_in(browser)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1


def test_trying_many_times_at_once_does_not_beat_the_throttle(replicas):
    statuses: list[int] = []

    def guess(server) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as browser:
            statuses.append(log_in(browser, password="guess").status_code)

    threads = [threading.Thread(target=guess, args=(replicas[i % 2],)) for i in range(24)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    assert sorted(set(statuses)) == [401, 429]
    # Ten free and the one that went over are checked; after it, one more try per pause that ran out while the
    # burst lasted (1 s, then 2 s, 4 s…: on a slow machine the burst outlasts the first pauses). Every other waits.
    pauses_over = math.floor(math.log2(1 + elapsed))
    assert 11 <= statuses.count(401) <= 11 + pauses_over, (statuses, elapsed)
    with httpx.Client(base_url=replicas[0].url, timeout=30) as owner:  # from the same address: it waits too
        assert log_in(owner, EMAIL, PASSWORD).status_code == 429
