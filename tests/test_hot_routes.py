"""HotRoute refuses, when it is built, an endpoint or guard it could not serve as FastAPI would."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, Depends, Request, Response

from app.http.hot_routes import HotRoute


async def endpoint(request: Request) -> Response:
    return Response()


async def guard(request: Request) -> None:
    return None


def build(call=endpoint, methods=("POST",), dependencies=()) -> APIRouter:
    router = APIRouter(route_class=HotRoute, dependencies=[Depends(d) for d in dependencies])
    router.add_api_route("/hot", call, methods=list(methods))
    return router


def test_a_request_only_endpoint_and_guard_make_a_hot_route() -> None:
    (route,) = build(dependencies=[guard]).routes
    assert isinstance(route, HotRoute) and route.guards == (guard,)


async def with_a_parameter(request: Request, n: int) -> Response:
    return Response()


def plain(request: Request) -> Response:
    return Response()


async def untyped(request: Request):
    return Response()


async def guard_with_a_parameter(request: Request, key: str) -> None:
    return None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"call": with_a_parameter}, "the endpoint must be `async def with_a_parameter"),
        ({"call": plain}, "the endpoint must be `async def plain"),
        ({"call": untyped}, "annotated `-> Response`"),
        ({"methods": ("GET",)}, "POST only"),
        ({"dependencies": [guard_with_a_parameter]}, "the guard guard_with_a_parameter"),
    ],
)
def test_anything_with_more_to_solve_is_refused_when_built(kwargs: dict, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        build(**kwargs)
