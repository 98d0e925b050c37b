"""The Host and Origin checks (ocrft.serving.origin_guard) in front of task=serve and the studio:
a DNS-rebinding Host and a foreign Origin are refused with a 403 that says why."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from ocrft.config import ServeConfig
from ocrft.serving.app import create_app
from ocrft.serving.origin_guard import OriginGuard, default_allowed_hosts, is_loopback
from ocrft.evaluation.generation import Generation


def echo_app() -> FastAPI:
    app = FastAPI()

    @app.get("/read")
    def read() -> dict:
        return {"ok": True}

    @app.post("/write")
    def write() -> dict:
        return {"written": True}

    return app


def client(base_url: str, **kwargs) -> TestClient:
    guard = OriginGuard(echo_app(), default_allowed_hosts("127.0.0.1"), check_origin=True, setting="studio", **kwargs)
    return TestClient(guard, base_url=base_url)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "LOCALHOST"])
def test_the_servers_own_names_are_answered(host):
    answer = client(f"http://{host}:7860").get("/read")
    assert answer.status_code == 200 and answer.json() == {"ok": True}


@pytest.mark.parametrize("host", ["evil.example:7860", "evil.example", "127.0.0.1.evil.example:7860", "localhost.:7860",
                                  "10.0.0.5:7860", "", "127.0.0.1:notaport"])  # fmt: skip
def test_any_other_host_header_is_refused_on_reads_and_writes(host):
    c = client("http://127.0.0.1:7860")
    for method, path in (("GET", "/read"), ("POST", "/write")):
        answer = c.request(method, path, headers={"host": host})
        assert answer.status_code == 403, (host, answer.text)
        assert "DNS rebinding" in answer.json()["detail"] and "studio.allowed_hosts" in answer.json()["detail"]


def test_allowed_hosts_adds_names_and_star_allows_any():
    named = OriginGuard(echo_app(), ["ocr.lab.internal"], check_origin=True, setting="studio")
    assert TestClient(named, base_url="http://ocr.lab.internal:7860").get("/read").status_code == 200
    assert TestClient(named, base_url="http://127.0.0.1:7860").get("/read").status_code == 403  # the list replaces the defaults
    star = OriginGuard(echo_app(), ["*"], check_origin=True, setting="studio")
    assert TestClient(star, base_url="http://anything.example").get("/read").status_code == 200


@pytest.mark.parametrize("origin", ["http://evil.example", "http://evil.example:7860", "null", "http://127.0.0.1:9999",
                                    "https://127.0.0.1:7860", "file://", "http://localhost:7860"])  # fmt: skip
def test_a_write_from_a_foreign_origin_is_refused_and_a_read_is_not(origin):
    c = client("http://127.0.0.1:7860")
    refused = c.post("/write", headers={"origin": origin})
    assert refused.status_code == 403 and "Origin" in refused.json()["detail"]
    assert c.get("/read", headers={"origin": origin}).status_code == 200  # the browser's CORS check keeps its answer


def test_same_origin_and_no_origin_writes_pass():
    c = client("http://127.0.0.1:7860")
    assert c.post("/write", headers={"origin": "http://127.0.0.1:7860"}).json() == {"written": True}
    assert c.post("/write").json() == {"written": True}  # curl, scripts, the openai SDK send no Origin


def test_a_websocket_from_a_foreign_origin_is_closed():
    app = FastAPI()

    @app.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        await socket.send_text("hello")
        await socket.close()

    guard = OriginGuard(app, ["127.0.0.1"], check_origin=True, setting="studio")
    c = TestClient(guard, base_url="http://127.0.0.1:7860")
    with c.websocket_connect("/ws", headers={"host": "127.0.0.1:7860", "origin": "http://127.0.0.1:7860"}) as socket:
        assert socket.receive_text() == "hello"
    with pytest.raises(WebSocketDisconnect) as closed:
        with c.websocket_connect("/ws", headers={"host": "127.0.0.1:7860", "origin": "http://evil.example"}):
            pass
    assert closed.value.code == 1008


def test_loopback_and_default_names():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.4", "example.org"))
    assert default_allowed_hosts("127.0.0.1") == ["localhost", "127.0.0.1", "::1"]
    assert "10.1.2.3" in default_allowed_hosts("10.1.2.3")


class Echo:
    def read(self, images: list, prompts: list[str], max_new_tokens: int) -> list[Generation]:
        return [Generation("text") for _ in images]


def test_serve_on_loopback_refuses_a_rebinding_host_with_an_openai_error():
    with TestClient(create_app(Echo(), ServeConfig(), "m"), base_url="http://127.0.0.1:8000") as c:
        assert c.get("/v1/models").status_code == 200
        refused = c.get("/v1/models", headers={"host": "evil.example:8000"})
        assert refused.status_code == 403
        error = refused.json()["error"]
        assert error["code"] == "host_not_allowed" and "serve.allowed_hosts" in error["message"]
        # browser clients of other origins may call a served model: no Origin check
        assert c.get("/health", headers={"origin": "http://chat.example"}).status_code == 200


def test_serve_beyond_loopback_answers_any_host_unless_allowed_hosts_is_set():
    with TestClient(create_app(Echo(), ServeConfig(host="0.0.0.0"), "m"), base_url="http://gpu-box.lab:8000") as c:
        assert c.get("/health").status_code == 200
    listed = ServeConfig(host="0.0.0.0", allowed_hosts=["gpu-box.lab"])
    with TestClient(create_app(Echo(), listed, "m"), base_url="http://other.lab:8000") as c:
        assert c.get("/health").status_code == 403
        assert c.get("/health", headers={"host": "gpu-box.lab:8000"}).status_code == 200
