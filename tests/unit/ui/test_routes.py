"""Every dashboard route over HTTP: what it shows, and bad input answered with a 4xx, never a 5xx."""

from __future__ import annotations

import json
import re
import threading
import uuid

import pytest

from tests.unit.ui.conftest import make_server, request


def test_runs_page_lists_every_run_with_state_metric_and_interval(ui, runs_dir):
    status, body, _ = request(ui.url + "/")
    assert status == 200
    states = dict(re.findall(r'data-run="([^"]+)" data-state="([^"]+)"', body))
    assert states == {"alpha": "finished", "beta": "finished", "gamma": "finished", "delta": "finished",
                      "live": "running", "broken": "failed"}  # the symlink leading out is not listed
    results = json.loads((runs_dir / "alpha" / "results.json").read_text())
    interval = results["after"]["intervals"]["eval_loss"]
    row = body.split('data-run="alpha"')[1].split("</tr>")[0]
    assert "<td>eval_loss</td>" in row
    assert f"{results['before']['eval_loss']:.4g} &rarr; <b>{results['after']['eval_loss']:.4g}</b>" in row
    assert f"[{interval['low']:.4g}, {interval['high']:.4g}]" in row
    assert "beyond noise" in row and "lora" in row and "instruction: qa.jsonl" in row and "5m 0" in row
    assert "data.train: file not found" in body.split('data-run="broken"')[1].split("</tr>")[0]
    live = body.split('data-run="live"', 1)[1]
    assert 'sse-swap="live-live"' in live and '<span class="step">5</span>/<span class="total">20</span>' in live
    # the validation evaluation inside the training phase, from status.json's work
    assert '<span class="work">evaluation 8/32 examples</span>' in live and '<span class="work-eta">30s</span>' in live


def test_runs_table_fragment(ui):
    status, body, _ = request(ui.url + "/runs/table")
    assert status == 200 and '<table id="runs">' in body and "<html" not in body
    assert "6 runs: 1 running, 4 finished, 1 failed, 0 resumable" in body


def test_run_page_embeds_report_config_and_export(ui, runs_dir):
    status, body, _ = request(ui.url + "/runs/alpha")
    assert status == 200
    assert "<h2>Metrics</h2>" in body and "<h2>Sample outputs</h2>" in body and "a loan to a company." in body
    assert f"lmforge serve {runs_dir / 'alpha'}" in body
    assert "AutoModelForCausalLM.from_pretrained(" in body and "passed" in body
    assert "name: alpha" in body  # the resolved config
    status, report, headers = request(ui.url + "/runs/alpha/report.html")
    assert status == 200 and report.startswith("<!DOCTYPE html>") and "default-src 'none'" in headers["content-security-policy"]


def test_failed_run_page_shows_the_error(ui):
    status, body, _ = request(ui.url + "/runs/broken")
    assert status == 200 and "data.train: file not found" in body and "--resume" in body


def test_compare_two_runs_pairs_them_on_the_shared_held_out_set(ui, runs_dir):
    status, body, _ = request(ui.url + "/compare?run=alpha&run=beta&run=gamma")
    assert status == 200
    a = json.loads((runs_dir / "alpha" / "results.json").read_text())["after"]
    b = json.loads((runs_dir / "beta" / "results.json").read_text())["after"]
    from lmforge.evaluate.report import noise_tests

    t = noise_tests(a, b)["eval_loss"]
    assert f"beta vs alpha on eval_loss: {t['difference']:+.4g} [{t['low']:+.4g}, {t['high']:+.4g}]" in body
    assert "gamma vs alpha: different held-out sets" in body
    assert body.count("<svg") >= 2 and 'id="same-prompts"' in body and "money you borrow." in body


def test_compare_picker_and_limits(ui):
    assert request(ui.url + "/compare")[0] == 200
    assert request(ui.url + "/compare?" + "&".join(f"run=r{i}" for i in range(7)))[0] == 400
    assert request(ui.url + "/compare?run=alpha&run=nope")[0] == 404


def test_compare_renders_lmforge_compare_output(tmp_path):
    from lmforge.evaluate.compare import write_compare_report
    from tests.fixtures.runs import write_run

    folder = write_run(tmp_path, "solo", html=False)
    write_compare_report(folder, {"title": "prompting vs fine-tuning", "recommendation": "fine-tune: it wins",
                                  "systems": {"base zero-shot": {"token_f1": 0.1}, "fine-tuned": {"token_f1": 0.6}}})
    server = make_server(tmp_path)
    try:
        status, body, _ = request(server.url + "/compare?run=solo")
    finally:
        server.stop()
    assert status == 200 and "lmforge compare: solo" in body and "fine-tune: it wins" in body


def _item_form(body: str) -> dict:
    return {k: v for k, v in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', body)}


def test_feedback_round_trip_feeds_preference_training(ui, runs_dir):
    status, body, _ = request(ui.url + "/feedback/alpha?annotator=carol")
    assert status == 200 and "Item 1 of 3 for carol" in body
    assert not (runs_dir / "feedback" / "alpha").exists()  # viewing writes nothing
    form = _item_form(body)
    status, panel, _ = request(ui.url + "/feedback/alpha", "POST", form={**form, "choice": "A", "edit": "a loan.\nsecond line"},
                               headers={"HX-Request": "true"})
    assert status == 200 and "saved" in panel and "Item 2 of 3" in panel
    folder = runs_dir / "feedback" / "alpha"
    judgement = json.loads((folder / "judgements.jsonl").read_text().splitlines()[-1])
    assert judgement["provenance"]["annotator"] == "carol" and judgement["edit"] == "a loan.\nsecond line"
    prefs = [json.loads(line) for line in (folder / "preferences.jsonl").read_text().splitlines()]
    assert all(set(p) == {"prompt", "chosen", "rejected", "provenance"} for p in prefs)
    from lmforge.config import parse_config
    from lmforge.data.splits import load_splits

    cfg = parse_config({"model": {"name": "x"}, "data": {"format": "preference", "train": str(folder / "preferences.jsonl")},
                        "objective": {"name": "dpo"}})
    splits = load_splits(cfg.data, 0)
    assert sum(map(len, (splits.train, splits.validation, splits.test))) == len(prefs)


def test_feedback_same_form_twice_and_same_item_twice_store_one(ui, runs_dir):
    status, body, _ = request(ui.url + "/feedback/beta?annotator=dave&mode=rate")
    form = _item_form(body)
    for _ in range(2):
        assert request(ui.url + "/feedback/beta", "POST", form={**form, "choice": "good"})[0] == 303
    other_tab = {**form, "submission": uuid.uuid4().hex}
    assert request(ui.url + "/feedback/beta", "POST", form={**other_tab, "choice": "bad"})[0] == 303
    rows = (runs_dir / "feedback" / "beta" / "judgements.jsonl").read_text().splitlines()
    assert len(rows) == 1 and json.loads(rows[0])["choice"] == "good"


def test_feedback_parallel_clients_lose_and_duplicate_nothing(ui, runs_dir):
    """Two annotators x 3 items x 4 clients each racing on every item (2 share one submission id)."""
    name, results = "gamma", {}
    forms = {}
    for who in ("erin", "frank"):
        from lmforge.ui.feedback import items_of

        items = items_of(json.loads((runs_dir / name / "results.json").read_text()), "pair")
        status, body, _ = request(ui.url + f"/feedback/{name}?annotator={who}")
        base = _item_form(body)
        for item in items:
            sid = uuid.uuid4().hex
            forms[(who, item.id)] = [{**base, "item": item.id, "submission": s, "choice": "tie"}
                                     for s in (sid, sid, uuid.uuid4().hex, uuid.uuid4().hex)]

    def post(key, i, form):
        results[(key, i)] = request(ui.url + f"/feedback/{name}", "POST", form=form)[0]

    threads = [threading.Thread(target=post, args=(key, i, f)) for key, fs in forms.items() for i, f in enumerate(fs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results.values()) == {303}
    rows = [json.loads(line) for line in (runs_dir / "feedback" / name / "judgements.jsonl").read_text().splitlines()]
    keys = [(r["provenance"]["annotator"], r["provenance"]["item"]) for r in rows]
    assert sorted(keys) == sorted(forms)  # every (annotator, item) exactly once
    status, body, _ = request(ui.url + f"/feedback/{name}?annotator=erin")
    assert "erin / frank" in body and "100%" in body and "erin judged all 3 items" in body


@pytest.mark.parametrize("change, status", [
    ({"choice": "Z"}, 400), ({"choice": ""}, 400), ({"annotator": "<script>"}, 400), ({"annotator": ""}, 400),
    ({"item": "nope"}, 404), ({"submission": "x"}, 400), ({"mode": "vote"}, 400), ({"edit": "x" * 20_001}, 400),
])
def test_feedback_bad_forms_are_4xx(ui, change, status):
    _, body, _ = request(ui.url + "/feedback/delta?annotator=gina")
    form = {**_item_form(body), "choice": "A", **change}
    assert request(ui.url + "/feedback/delta", "POST", form=form)[0] == status


def test_data_page_highlights_trained_spans(ui):
    status, body, _ = request(ui.url + "/data/delta?n=2")
    assert status == 200
    assert '<mark class="trained">a loan to a company.&lt;|im_end|&gt;</mark>' in body
    assert body.count("--- example") == 2


def test_data_page_with_a_missing_model_shows_the_error(ui):
    status, body, _ = request(ui.url + "/data/alpha")
    assert status == 200 and 'class="error"' in body and "tiny-llama" in body


def test_data_page_shows_prepare_report(tmp_path):
    from tests.fixtures.runs import write_run

    folder = write_run(tmp_path, "prep", html=False)
    (folder / "data").mkdir()
    (folder / "data" / "report.html").write_text("<html><body><h1>Data preparation report</h1><h2>Rules</h2>"
                                                 "<table><tr><td>dedup_exact</td></tr></table></body></html>")
    server = make_server(tmp_path)
    try:
        body = request(server.url + "/data/prep")[1]
    finally:
        server.stop()
    assert 'id="prepare-report"' in body and "dedup_exact" in body


def test_playground_page_shows_monitor_state(ui):
    status, body, _ = request(ui.url + "/playground/alpha")
    assert status == 200 and "no traffic window file" in body and 'id="chat-form"' in body


@pytest.mark.parametrize("form, status", [({"message": ""}, 400), ({"message": "hi", "max_tokens": "x"}, 400),
                                          ({"message": "hi", "max_tokens": "0"}, 400), ({}, 400)])
def test_playground_bad_chats_are_4xx(ui, form, status):
    assert request(ui.url + "/playground/alpha/chat", "POST", form=form)[0] == status


def test_playground_before_export_is_409(ui, runs_dir, tmp_path):
    from tests.fixtures.runs import write_run

    folder = write_run(tmp_path, "young", html=False)
    import shutil

    shutil.rmtree(folder / "export")
    server = make_server(tmp_path)
    try:
        assert request(server.url + "/playground/young/chat", "POST", form={"message": "hi"})[0] == 409
    finally:
        server.stop()


def test_new_run_form_validates_like_the_cli(ui, runs_dir):
    assert request(ui.url + "/runs/alpha/new")[0] == 200
    ok = request(ui.url + "/runs/alpha/validate", "POST", form={"new_name": "alpha-2", "overrides": "train.lr=0.001\n# note"})[1]
    assert 'data-ok="true"' in ok and "method lora" in ok
    bad = request(ui.url + "/runs/alpha/validate", "POST", form={"new_name": "alpha-2", "overrides": "train.lrr=1"})[1]
    assert 'data-ok="false"' in bad and "train.lrr" in bad and "did you mean" in bad
    rule = request(ui.url + "/runs/alpha/validate", "POST",
                   form={"new_name": "alpha-2", "overrides": "method={name: prefix_tuning}\nexport.merged=true"})[1]
    assert 'data-ok="false"' in rule and "cannot be merged" in rule
    taken = request(ui.url + "/runs/alpha/validate", "POST", form={"new_name": "beta"})[1]
    assert "exists already" in taken
    assert not (runs_dir / "alpha-2").exists()


@pytest.mark.parametrize("name, status", [("beta", 409), ("../x", 400), (".hidden", 400), ("a/b", 400), ("", 400)])
def test_launch_refuses_bad_names_and_existing_folders(ui, runs_dir, name, status):
    before = sorted(p.name for p in runs_dir.iterdir())
    assert request(ui.url + "/runs/alpha/launch", "POST", form={"new_name": name})[0] == status
    assert sorted(p.name for p in runs_dir.iterdir()) == before


def test_launch_with_invalid_overrides_creates_nothing(ui, runs_dir):
    status, body, _ = request(ui.url + "/runs/alpha/launch", "POST", form={"new_name": "zeta", "overrides": "train.lr=abc"})
    assert status == 400 and "train.lr" in body and not (runs_dir / "zeta").exists()


def test_sse_streams_send_live_fragments(ui):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", ui.port, timeout=10)
    conn.request("GET", "/events/runs")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("content-type").startswith("text/event-stream")
    seen = b""
    while b"event: live-live" not in seen:
        seen += resp.read1(4096)
    assert b'data: <div class="live-panel" data-run="live">' in seen
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", ui.port, timeout=10)
    conn.request("GET", "/events/run/live")
    resp = conn.getresponse()
    seen = b""
    while b"event: live\n" not in seen:
        seen += resp.read1(4096)
    conn.close()
    assert request(ui.url + "/events/run/nope")[0] == 404


BAD_GETS = ["/runs/nope", "/runs/..%2F..%2Fetc%2Fpasswd", "/runs/%2e%2e", "/runs/escape", "/runs/escape/report.html",
            "/runs/.hidden", "/feedback/..%2Fsecret", "/feedback/escape", "/data/escape", "/playground/escape",
            "/runs/escape/new", "/events/run/escape", "/static/..%2Fapp.py", "/static/nope.js", "/nope",
            "/data/alpha?n=0", "/data/alpha?n=abc", "/data/alpha?n=51", "/feedback/alpha?mode=x",
            "/feedback/alpha?annotator=%3Cb%3E", "/runs/" + "a" * 300]


@pytest.mark.parametrize("path", BAD_GETS)
def test_bad_paths_are_4xx_never_5xx(ui, path):
    status, body, _ = request(ui.url + path)
    assert 400 <= status < 500, (status, body[-400:])
    assert "secret" not in body.split("</header>")[-1] or "no such run" in body


def test_escaping_symlinks_and_traversal_never_touch_outside(ui, runs_dir):
    outside = (runs_dir / "escape").resolve()
    before = sorted(p.name for p in outside.rglob("*"))
    form = {"annotator": "x", "item": "y", "submission": uuid.uuid4().hex, "choice": "A"}
    for path in ("/feedback/escape", "/feedback/..%2F..%2Ftmp", "/runs/escape/launch", "/runs/escape/validate",
                 "/playground/escape/chat"):
        assert request(ui.url + path, "POST", form=form)[0] in (404, 400)
    assert sorted(p.name for p in outside.rglob("*")) == before


def test_oversized_bodies_are_413(ui, runs_dir):
    big = {"new_name": "x", "overrides": "a" * 300_000}
    for path in ("/runs/alpha/validate", "/runs/alpha/launch", "/feedback/alpha", "/playground/alpha/chat"):
        assert request(ui.url + path, "POST", form=big)[0] == 413
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", ui.port, timeout=10)  # chunked: no length declared
    conn.putrequest("POST", "/runs/alpha/validate")
    conn.putheader("Content-Type", "application/x-www-form-urlencoded")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = b"a" * 65536
    try:
        for _ in range(6):
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert conn.getresponse().status == 413
    conn.close()


def test_wrong_method_and_content_type_are_4xx(ui):
    assert request(ui.url + "/", "DELETE")[0] == 405
    assert request(ui.url + "/runs/alpha/validate", "POST", data=b'{"a": 1}',
                   headers={"Content-Type": "application/json"})[0] == 415
    assert request(ui.url + "/runs/alpha/validate", "POST", data=b"\xff\xfe", headers={
        "Content-Type": "application/x-www-form-urlencoded"})[0] == 400


def test_cross_origin_posts_and_foreign_hosts_are_refused(ui, runs_dir):
    form = {"new_name": "evil", "overrides": ""}
    assert request(ui.url + "/runs/alpha/launch", "POST", form=form, headers={"Origin": "http://evil.example"})[0] == 403
    assert not (runs_dir / "evil").exists()
    assert request(ui.url + "/", headers={"Host": "evil.example:7860"})[0] == 403  # DNS rebinding
    assert request(ui.url + "/", headers={"Host": f"localhost:{ui.port}"})[0] == 200
    ok = request(ui.url + "/runs/alpha/validate", "POST", form=form, headers={"Origin": ui.url})
    assert ok[0] == 200


def test_api_key_guards_every_page(runs_dir):
    server = make_server(runs_dir, keys=["k3y"])
    try:
        assert request(server.url + "/", html=False)[0] == 401
        status, _, headers = request(server.url + "/runs/alpha")
        assert status == 303 and headers["location"].startswith("/login")
        assert request(server.url + "/", headers={"Authorization": "Bearer k3y"})[0] == 200
        assert request(server.url + "/", headers={"Authorization": "Bearer nope"}, html=False)[0] == 401
        assert request(server.url + "/login", "POST", form={"key": "nope"})[0] == 401
        status, _, headers = request(server.url + "/login", "POST", form={"key": "k3y", "next": "//evil.example"})
        assert status == 303 and headers["location"] == "/"
        cookie = headers["set-cookie"].split(";")[0]
        assert "httponly" in headers["set-cookie"].lower()
        assert request(server.url + "/runs/alpha", headers={"Cookie": cookie})[0] == 200
        assert request(server.url + "/static/htmx.min.js")[0] == 200  # scripts load on the login page
    finally:
        server.stop()


def test_missing_runs_dir_is_a_user_error(tmp_path):
    from lmforge.cli.main import main

    assert main(["ui", str(tmp_path / "nope")]) == 2


def test_binding_elsewhere_needs_a_key(tmp_path, capsys):
    from lmforge.cli.main import main

    assert main(["ui", str(tmp_path), "--host", "0.0.0.0"]) == 2
    assert "no API key" in capsys.readouterr().err


def test_runs_page_reads_a_new_run_without_restart(ui, runs_dir):
    from tests.fixtures.runs import write_run

    write_run(runs_dir, "omega", seed=9, html=False)
    try:
        assert 'data-run="omega" data-state="finished"' in request(ui.url + "/")[1]
    finally:
        import shutil

        shutil.rmtree(runs_dir / "omega")

