"""A view's declaration parses its input: the view gets typed values, and a broken rule is a
400 envelope naming the parameter, before the view runs."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Blueprint, Flask, Response
from pydantic import BaseModel, ConfigDict

from chassis.web.operations import IntParam, TextParam, declaration, operation
from chassis.web.responses import ok
from tests.support.flask_app import AppFactory


class Body(BaseModel):
    """What the echo view takes."""

    model_config = ConfigDict(extra="forbid")
    count: int


@pytest.fixture
def echo_app(make_app: AppFactory) -> Flask:
    """The test app with a view echoing what its declaration parsed."""
    app = make_app()
    echo = Blueprint("echo", __name__)

    @echo.post("/test/echo/<n>")
    @operation(
        path={"n": IntParam(minimum=1, maximum=9)},
        query={"tag": TextParam(max_length=3)},
        body=Body,
        answers={200: Body},
        database=False,
    )
    def echoed(n: int, tag: str, body: Body) -> Response:
        """Echo the parsed values."""
        return ok({"n": n, "tag": tag, "count": body.count})

    app.register_blueprint(echo)
    return app


def test_the_view_gets_the_parsed_values(echo_app: Flask) -> None:
    """The path value as an int, the query value as text, the body as its model."""
    response = echo_app.test_client().post("/test/echo/7?tag=ab", json={"count": 3})
    assert response.status_code == 200
    assert response.json is not None
    assert response.json["data"] == {"n": 7, "tag": "ab", "count": 3}


@pytest.mark.parametrize(
    ("url", "body", "msg"),
    [
        pytest.param("/test/echo/0?tag=a", {"count": 1}, "n: must be an integer from 1 to 9", id="path-range"),
        pytest.param("/test/echo/x?tag=a", {"count": 1}, "n: must be an integer from 1 to 9", id="path-letters"),
        pytest.param("/test/echo/1", {"count": 1}, "tag: must be 1 to 3 characters, without NUL characters", id="query-missing"),
        pytest.param("/test/echo/1?tag=abcd", {"count": 1}, "tag: must be 1 to 3 characters, without NUL characters", id="query-long"),
        pytest.param("/test/echo/1?tag=a%00", {"count": 1}, "tag: must be 1 to 3 characters, without NUL characters", id="query-nul"),
        pytest.param("/test/echo/1?tag=a", {"count": "1"}, "count: Input should be a valid integer", id="body-strict"),
        pytest.param("/test/echo/0?tag=a", {"count": "1"}, "n: must be an integer from 1 to 9", id="path-first"),
    ],
)  # fmt: skip
def test_a_broken_rule_is_a_400_naming_it(echo_app: Flask, url: str, body: Any, msg: str) -> None:
    """Path values are checked first, then the query, then the body."""
    response = echo_app.test_client().post(url, json=body)
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["msg"] == msg


def test_a_whole_number_written_with_a_fraction_is_an_integer(echo_app: Flask) -> None:
    """JSON's 3.0 is JSON Schema's integer 3 (what the document promises); 3.5 is not."""
    client = echo_app.test_client()
    whole = client.post(
        "/test/echo/1?tag=a", data='{"count": 3.0}', content_type="application/json"
    )
    assert (whole.status_code, whole.json and whole.json["data"]["count"]) == (200, 3)
    assert client.post("/test/echo/1?tag=a", json={"count": 3.5}).status_code == 400


def test_a_query_value_with_a_default_is_optional() -> None:
    """Absent, it is its default; with no default, absent is a broken rule."""
    assert IntParam(minimum=1, maximum=100, default=20).parse("limit", None) == 20
    assert not IntParam(minimum=1, maximum=100, default=20).required
    assert IntParam(minimum=1, maximum=100).required


def test_the_declaration_is_kept_on_the_registered_view(echo_app: Flask) -> None:
    """What the document reads: the view Flask calls carries its declaration."""
    found = declaration(echo_app.view_functions["echo.echoed"])
    assert found is not None
    assert (found.body, found.database, list(found.answers)) == (Body, False, [200])
