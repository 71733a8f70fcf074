"""``sned serve`` (sned/search/serve*.py): a real server on loopback, queried over HTTP."""

import contextlib
import io
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import uvicorn

from sned.search.cli import main
from sned.search.objectives import AnalyticPredictors
from sned.search.serve import CACHE_HEADER, create_app
from sned.search.serve_cli import is_loopback
from sned.supernet.space import arch_id, experiment_path

httpx = pytest.importorskip("httpx")  # a dev extra: the HTTP client of these tests


class LoopbackServer:
    """uvicorn serving ``app`` in a thread on a free 127.0.0.1 port."""

    def __init__(self, app):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def root(tmp_path_factory, real_files):
    """An experiments folder: ``tiny.yaml`` with a real latency table and predictor in ``tiny/``."""
    folder = tmp_path_factory.mktemp("experiments")
    shutil.copy(experiment_path("tiny"), folder / "tiny.yaml")
    (folder / "tiny").mkdir()
    table, predictor = real_files
    shutil.copy(table, folder / "tiny" / "latency-cpu.parquet")
    shutil.copy(predictor, folder / "tiny" / "predictor.npz")
    return folder


@pytest.fixture(scope="module")
def server(root):
    with LoopbackServer(create_app(root=root)) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def _cli_json(argv, tmp_path):
    """``sned search ... --json`` through the real CLI; returns its JSON without the run folder."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["search", *argv, "--json", "--out", str(tmp_path / "run")]) == 0
    payload = json.loads(out.getvalue())
    assert Path(payload.pop("out")) == tmp_path / "run"
    return payload


def test_health_experiments_and_openapi(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["known_archs"] >= 0 and health["space_indexes"] >= 0
    [tiny] = client.get("/experiments").json()["experiments"]
    assert tiny["name"] == "tiny" and tiny["resolutions"] == [32, 64, 128] and tiny["size"] == 3888
    assert tiny["devices"] == ["cpu"] and tiny["predictors"] == ["predictor.npz"]
    schema = client.get("/openapi.json").json()
    assert {"/health", "/experiments", "/search", "/subnets/{arch_id}"} <= set(schema["paths"])
    assert "422" in schema["paths"]["/search"]["post"]["responses"]
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize("options", [
    ["--budget-ms", "200", "--res", "128"],
    ["--budget-ms", "150", "--res", "64", "--method", "nsga2", "--pop", "16", "--gens", "4", "--seed", "3",
     "--objectives", "fvd,latency,params"],
])
def test_analytic_search_equals_the_cli(client, tmp_path, options):
    body = {"analytic": True}
    names = {"--budget-ms": ("budget_ms", float), "--res": ("resolutions", lambda v: [int(v)]),
             "--method": ("method", str), "--pop": ("pop_size", int), "--gens": ("generations", int),
             "--seed": ("seed", int), "--objectives": ("objectives", lambda v: v.split(","))}
    for flag, value in zip(options[::2], options[1::2], strict=True):
        key, cast = names[flag]
        body[key] = cast(value)
    r = client.post("/search", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == _cli_json([*options, "--analytic"], tmp_path)  # the whole object, byte-for-byte values
    assert r.json()["fronts"][str(body["resolutions"][0])] and "Warning" not in r.headers


def test_deprecated_field_names_give_the_same_answer_with_a_warning(client):
    """``res``/``pop``/``gens`` (sned 0.1.0's names) still work until 0.2: same answer, a Warning header."""
    new = {"analytic": True, "budget_ms": 150, "resolutions": [64], "method": "nsga2", "pop_size": 16,
           "generations": 4, "seed": 3}
    old = {"analytic": True, "budget_ms": 150, "res": [64], "method": "nsga2", "pop": 16, "gens": 4, "seed": 3}
    first, again = client.post("/search", json=new), client.post("/search", json=old)
    assert first.status_code == again.status_code == 200, again.text
    assert again.content == first.content and again.headers[CACHE_HEADER] == "hit"  # one setting, one cache key
    warning = again.headers["Warning"]
    assert warning.startswith("299 ") and all(f"{o} -> {n}" in warning for o, n in
                                              (("res", "resolutions"), ("pop", "pop_size"), ("gens", "generations")))
    assert "0.2" in warning and "Warning" not in first.headers
    both = client.post("/search", json={**new, "pop": 16})
    assert both.status_code == 422 and both.json()["field"] == "pop" and "pop_size" in both.json()["error"]
    bad = client.post("/search", json={"res": [96]})  # an old name's errors name the setting
    assert bad.status_code == 422 and bad.json()["field"] == "resolutions"


def test_request_fields_are_the_search_config_names():
    """One vocabulary: every search setting of the request is a SearchConfig field of the same name."""
    import dataclasses
    import typing

    from sned.search.engine import METHODS, SearchConfig
    from sned.search.serve import SearchRequest

    service_only = {"device", "predictor", "analytic"}  # names of bundled files, not settings
    assert set(SearchRequest.model_fields) - service_only <= {f.name for f in dataclasses.fields(SearchConfig)}
    assert typing.get_args(SearchRequest.model_fields["method"].annotation) == METHODS


def test_file_search_equals_the_cli(client, root, tmp_path):
    r = client.post("/search", json={"budget_ms": 200, "resolutions": [64, 128]})
    assert r.status_code == 200, r.text
    served = r.json()
    cli = _cli_json(["--experiment", str(root / "tiny.yaml"), "--table", str(root / "tiny/latency-cpu.parquet"),
                     "--predictor", str(root / "tiny/predictor.npz"), "--budget-ms", "200", "--res", "64,128"],
                    tmp_path)
    assert served["experiment"] == "tiny"  # the service names, never paths
    assert served["device"] == "cpu-test"
    assert served["fronts"] == cli["fronts"] and len(served["fronts"]["128"]) > 1
    assert {k: v for k, v in served.items() if k != "experiment"} == {k: v for k, v in cli.items()
                                                                       if k != "experiment"}


def test_repeated_request_comes_from_the_cache(client, root):
    body = {"budget_ms": 180, "resolutions": [128], "seed": 11}
    before = client.get("/health").json()["searches_run"]
    first = client.post("/search", json=body)
    again = client.post("/search", json={**body, "budget_ms": 180.0, "method": "auto"})  # same canonical request
    assert (first.headers[CACHE_HEADER], again.headers[CACHE_HEADER]) == ("miss", "hit")
    assert again.content == first.content
    assert client.get("/health").json()["searches_run"] == before + 1
    # The key holds the files' sha256: a new table content is a new search, with its answer.
    table = root / "tiny" / "latency-cpu.parquet"
    saved = table.read_bytes()
    try:
        shutil.copy(experiment_path("tiny").with_suffix("") / "latency-cpu.parquet", table)
        changed = client.post("/search", json=body)
        assert changed.headers[CACHE_HEADER] == "miss" and changed.json()["device"] != "cpu-test"
    finally:
        table.write_bytes(saved)
    assert client.post("/search", json=body).headers[CACHE_HEADER] == "hit"


def test_identical_searches_in_flight_run_once_and_health_answers_meanwhile(server, client):
    # NSGA-II without early stopping: long enough to overlap two requests and some /health calls.
    body = {"analytic": True, "budget_ms": 250, "resolutions": [64, 128], "method": "nsga2", "pop_size": 32,
            "generations": 30, "patience": 30, "seed": 5}
    before = client.get("/health").json()["searches_run"]
    answers = [None, None]

    def post(i):
        with httpx.Client(base_url=server.url, timeout=120) as c:
            answers[i] = c.post("/search", json=body)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    in_flight = 0
    while any(t.is_alive() for t in threads):
        in_flight = max(in_flight, client.get("/health").json()["searches_in_flight"])
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert sorted(a.headers[CACHE_HEADER] for a in answers) in (["miss", "shared"], ["hit", "miss"])
    assert answers[0].content == answers[1].content
    assert client.get("/health").json()["searches_run"] == before + 1
    assert in_flight == 1  # /health answered while the one search ran (correctness, not speed)


@pytest.mark.parametrize("body, field, valid", [
    ({"budget_ms": 0}, "budget_ms", None),
    ({"budget_ms": -3.5}, "budget_ms", None),
    ({"budget_ms": "200"}, "budget_ms", None),  # strict: a string is not a number
    ({"budget_ms": 10, "resolutions": [128], "analytic": True}, "budget_ms", None),  # below the fastest subnet
    ({"resolutions": [96]}, "resolutions", [32, 64, 128]),
    ({"resolutions": "128"}, "resolutions", None),
    ({"experiment": "nope"}, "experiment", ["tiny"]),
    ({"experiment": "../tiny"}, "experiment", ["tiny"]),
    ({"experiment": "/etc/passwd"}, "experiment", ["tiny"]),
    ({"device": "../../etc/passwd"}, "device", None),
    ({"device": "h200"}, "device", ["cpu"]),
    ({"predictor": "/tmp/x.npz"}, "predictor", None),
    ({"predictor": "other.npz"}, "predictor", ["predictor.npz"]),
    ({"objectives": ["fvd", "energy"]}, "objectives.1", ["fvd", "latency", "params", "gflops", "loss"]),
    ({"objectives": ["fvd"]}, "objectives", ["fvd", "latency", "params", "gflops", "loss"]),
    ({"objectives": ["loss", "latency"], "analytic": True}, "objectives", None),  # the stand-in models FVD only
    ({"method": "grid"}, "method", ["auto", "nsga2", "exhaustive"]),
    ({"pop_size": 2}, "pop_size", None),
    ({"generations": 10**6}, "generations", None),
    ({"table": "/etc/passwd"}, "table", None),  # no path fields at all
    ({"method": "nsga2", "pop_size": 512, "generations": 1000}, "generations", None),  # over the evaluation limit
])
def test_bad_requests_are_422_naming_the_field(client, body, field, valid):
    r = client.post("/search", json=body)
    assert r.status_code == 422, r.text
    payload = r.json()
    assert payload["field"] == field and payload["error"]
    assert payload.get("valid") == valid


def test_malformed_bodies_are_4xx(client):
    for content in (b"{", b"[]", b"null", b'"x"', b"\xff\xfe"):
        r = client.post("/search", content=content, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, (content, r.status_code, r.text)


def test_subnet_from_a_search_and_from_the_space(client, root, space):
    front = client.post("/search", json={"budget_ms": 200, "resolutions": [128], "analytic": True}).json()["fronts"]["128"]
    member = front[0]
    r = client.get(f"/subnets/{member['arch_id']}")
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["found_in"] == "search" and info["arch"] == member["arch"]
    assert info["latency_ms"]["analytic"] == pytest.approx(member["latency_ms"])
    assert info["fvd"]["analytic"]["mean"] == pytest.approx(member["fvd_pred"])
    assert info["params"] == member["params"] and set(info["latency_ms"]) == {"cpu", "analytic"}
    assert "sned search --experiment tiny --budget-ms 200.0 --res 128 --analytic" in info["export_command"]
    assert f"sned export runs/serve-{member['arch_id']}/pareto.json --id {member['arch_id']}" in info["export_command"]
    # An arch no search returned: found by enumerating the space, scored by the real files.
    from sned.search.objectives import FilePredictors

    arch = space.sample(np.random.default_rng(7), res=64)
    wanted = arch_id(arch)
    info = client.get(f"/subnets/{wanted}").json()
    assert info["found_in"] == "space" and info["arch"] == arch and info["res"] == 64
    files = FilePredictors(space, root / "tiny/latency-cpu.parquet", root / "tiny/predictor.npz")
    X = space.encode([arch])
    assert info["latency_ms"]["cpu"] == pytest.approx(float(files.latency_ms(X)[0]))
    assert info["fvd"]["predictor.npz"]["mean"] == pytest.approx(float(files.fvd(X)[0][0]))
    assert info["latency_ms"]["analytic"] == pytest.approx(float(AnalyticPredictors(space).latency_ms(X)[0]))
    assert client.get("/subnets/0000000000").status_code == 404
    assert client.get("/subnets/0000000000").json()["field"] == "arch_id"
    assert client.get("/subnets/not-an-id").status_code == 422
    assert client.get(f"/subnets/{wanted}", params={"experiment": "../x"}).status_code == 422


def _referenced_urls(html: str) -> list[str]:
    """Every URL a page loads: src/href/spec-url attributes and the Swagger UI ``url:`` option."""
    return re.findall(r'(?:src|href|spec-url)="([^"]*)"', html) + re.findall(r"\burl: '([^']*)'", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_every_asset_from_the_app_itself(client, page):
    """Offline docs: no URL in the page names another host, and everything it references is served here."""
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html), re.findall(r"\S*//\S+", html)
    urls = _referenced_urls(html)
    scripts = [u for u in urls if u.endswith(".js")]
    assert scripts and "/openapi.json" in urls, urls
    if page == "/docs":
        assert any(u.endswith(".css") for u in urls), urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url  # this server, any host name it is reached by
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 100, (url, asset.status_code)
        if url.endswith(".css"):
            assert "text/css" in asset.headers["content-type"]
            assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import", asset.text), url  # no fonts from a CDN
        elif url.endswith(".js"):
            assert "javascript" in asset.headers["content-type"], (url, asset.headers["content-type"])
    assert client.get("/docs/oauth2-redirect").status_code == 200
    assert client.get("/static-offline-docs/missing.js").status_code == 404


def test_lru_evicts_past_its_bound_and_keeps_the_most_recent():
    from sned.search.serve import LRU

    cache: LRU[str, int] = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert len(cache) == 2 and "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    cache.put("a", 4)  # replacing counts as a use, never as a second entry
    assert len(cache) == 2 and cache.get("a") == 4
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            LRU(bad)


OTHER_YAML = ("name: other\nspace:\n  resolutions: [32]\n  frames: 8\n  patch_size: 4\n  stages:\n"
              "    - {widths: [32, 64], depths: [1, 2]}\n    - {widths: [32, 64], depths: [1, 2], attention: true}\n")


def test_service_caches_stop_at_their_bound_and_evicted_entries_are_recomputed(root, tmp_path, space):
    """known_archs and space_indexes are LRU caches: full at their bound, and a miss is answered correctly."""
    import asyncio

    from sned.search.serve import SEARCHES_PER_ARCH, Registry, SearchRequest, SearchService
    from sned.supernet.space import load_space

    folder = tmp_path / "experiments"
    shutil.copytree(root, folder)
    (folder / "other.yaml").write_text(OTHER_YAML)
    other = load_space(folder / "other.yaml")
    service = SearchService(Registry(folder), known_archs=5, space_indexes=1)

    # 1. Space indexes: one kept; the evicted one is rebuilt and gives the same answer.
    wanted = space.sample(np.random.default_rng(3), res=64)
    first = service.subnet(arch_id(wanted), "tiny")
    assert first.found_in == "space" and first.arch == wanted and len(service._indexes) == 1
    other_arch = other.sample(np.random.default_rng(4), res=32)
    assert service.subnet(arch_id(other_arch), "other").arch == other_arch
    assert len(service._indexes) == 1 and space.hash not in service._indexes  # tiny's index went
    again = service.subnet(arch_id(wanted), "tiny")
    assert again.model_dump() == first.model_dump() and space.hash in service._indexes

    # 2. Known archs: never more than the bound; an evicted one is found again by enumeration.
    requests = [SearchRequest(budget_ms=200, resolutions=[128], analytic=True, method="exhaustive", patience=patience)
                for patience in range(1, SEARCHES_PER_ARCH + 2)]  # exhaustive: one front, distinct requests

    async def search_all(target: SearchService) -> list[dict]:
        answers = []
        for request in requests:
            body, how = await target.search(request)
            assert how == "miss"
            answers.append(json.loads(body))
            assert len(target._known) <= target._known.size
        return answers

    front = asyncio.run(search_all(service))[0]["fronts"]["128"]
    assert len(front) > 5 and len(service._known) == 5  # full, not growing
    kept = [m for m in front if m["arch_id"] in service._known]
    evicted = [m for m in front if m["arch_id"] not in service._known]
    assert len(kept) == 5 and evicted
    info = service.subnet(kept[-1]["arch_id"], None)
    assert info.found_in == "search" and info.searches[-1]["patience"] == SEARCHES_PER_ARCH + 1
    member = evicted[0]
    info = service.subnet(member["arch_id"], None)
    assert info.found_in == "space" and info.arch == member["arch"] and info.searches == []
    assert info.latency_ms["analytic"] == pytest.approx(member["latency_ms"])
    assert info.fvd["analytic"]["mean"] == pytest.approx(member["fvd_pred"]) and info.params == member["params"]
    assert len(service._known) == 5 and len(service._indexes) == 1

    # 3. With room for the whole front, each arch keeps only the most recent requests, each once.
    roomy = SearchService(Registry(folder))
    front = asyncio.run(search_all(roomy))[0]["fronts"]["128"]
    info = roomy.subnet(front[0]["arch_id"], None)
    assert [s["patience"] for s in info.searches] == list(range(2, SEARCHES_PER_ARCH + 2))


def test_token_is_required_except_for_health(root):
    with LoopbackServer(create_app(root=root, token="s3cret")) as srv, httpx.Client(base_url=srv.url) as c:
        assert c.get("/health").status_code == 200
        for path in ("/experiments", "/openapi.json", "/subnets/0000000000"):
            r = c.get(path)
            assert r.status_code == 401 and r.json()["field"] == "Authorization", path
        assert c.get("/experiments", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/experiments", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_cli_refuses_a_public_address_without_a_token(capsys, monkeypatch):
    monkeypatch.delenv("SNED_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "needs a token" in err and len(err.strip().splitlines()) == 1
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_sned_serve_command_serves_on_loopback(tmp_path):
    """The real CLI in its own process: binds 127.0.0.1 by default, answers, and imports no torch."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("import sys\n"
            "sys.modules['torch'] = None  # the service must not need torch\n"
            "from sned.search.cli import main\n"
            f"sys.exit(main(['serve', '--port', '{port}', '--log-level', 'warning']))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "sned serve did not start"
                time.sleep(0.1)
        assert health.json()["status"] == "ok"
        names = [e["name"] for e in httpx.get(f"http://127.0.0.1:{port}/experiments").json()["experiments"]]
        assert "tiny" in names
        r = httpx.post(f"http://127.0.0.1:{port}/search",
                       json={"budget_ms": 200, "resolutions": [128], "analytic": True}, timeout=60)
        assert r.status_code == 200 and r.json()["fronts"]["128"]
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
def test_schemathesis_fuzz_finds_no_500_and_no_schema_violation(root):
    """Fuzz the OpenAPI schema against a running server (bounded: 30 examples per operation, small searches)."""
    exe = Path(sys.executable).with_name("schemathesis")
    if not exe.exists():
        pytest.skip("schemathesis is not installed")
    with LoopbackServer(create_app(root=root, max_evaluations=4000)) as srv:
        proc = subprocess.run([str(exe), "run", f"{srv.url}/openapi.json", "--max-examples", "30",
                               "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
                               "--seed", "1", "--no-color"],
                              capture_output=True, text=True, timeout=600)
        searches = httpx.get(f"{srv.url}/health").json()["searches_run"]
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "passed" in proc.stdout and searches > 0  # the fuzz reached real searches, not only 422s


@pytest.mark.slow
def test_ray_serve_deployment(root, tmp_path):
    """``sned serve --ray``: the same app behind Ray Serve answers like the plain server."""
    pytest.importorskip("ray.serve")
    pytest.importorskip("grpc_reflection", reason="needs the cluster extra: pip install 'sned[cluster]'")
    from sned.search.serve_ray import deploy, shutdown

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    deploy(host="127.0.0.1", port=port, token=None, address=None, replicas=1, root=root, blocking=False)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if c.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "Ray Serve did not come up"
                time.sleep(0.5)
            body = {"budget_ms": 200, "resolutions": [128], "analytic": True}
            r = c.post("/search", json=body)
            assert r.status_code == 200 and r.headers[CACHE_HEADER] == "miss"
            assert c.post("/search", json=body).headers[CACHE_HEADER] == "hit"
            assert r.json() == _cli_json(["--budget-ms", "200", "--res", "128", "--analytic"], tmp_path)
            assert c.post("/search", json={"experiment": "../x"}).status_code == 422
    finally:
        shutdown()
