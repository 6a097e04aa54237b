"""The station twin's vapor-recovery and safety / inspection / risk panels in Chromium, against the APIs.

Two simulated stations for 2½ days with the vapor-recovery monitors on (one station's monitor switched
off: it sends no vapor data), a blocked vapor nozzle (A/L ≈ 0.8: a GB 20952-2020 E.3.3 warning day at
each close), an inspector's report with findings (POST /api/v1/inspections) and a combustible-gas
detector reading through the ingest path. The page's figures must be the API's, nothing may be shown
as raw JSON, the panels must follow the live data, and no request may leave the machine.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import test_browser
from playwright.async_api import Browser, Page
from test_browser import REG_T0, SHOTS, Twin, open_page

from simulators.faults import build_fault
from twin.events import GASOLINE_GRADES

pytestmark = pytest.mark.timeout(120)
browser = test_browser.browser  # the fixture: Debian's Chromium through Playwright

STATUS_ZH = {"compliant": "合规", "warning": "预警", "alarm": "报警", "no_data": "暂无数据",
             "not_judged": "未判定（有效加油不足 5 次）"}
#: Raw JSON on screen: an element whose text is a JSON object or array (the panels' former dumps).
NO_JSON = ("[...document.querySelectorAll('#vapor-panel *, #risk-panel *')]"
           ".filter(e => /^\\s*[\\[{]/.test(e.textContent)).map(e => e.textContent.slice(0, 60))")
NO_STATION_DUMP = ("[...document.querySelectorAll('body *')]"
                   ".filter(e => /^\\{\\s*\"station\"/.test(e.textContent.trim())).length")


def _pct(text: str) -> float:
    return float(text.replace("%", "").replace(",", "").strip())


async def _cells(page: Page, selector: str) -> list[dict[str, str]]:
    return await page.evaluate(
        f"[...document.querySelectorAll('{selector}')].map(r => ({{id: r.dataset.nozzle, "
        "...Object.fromEntries([...r.querySelectorAll('td[data-field]')].map(c => [c.dataset.field, "
        "c.textContent])), now: r.querySelector('[data-role=nozzle-status]').dataset.value}))")


async def _risk_matches(page: Page, want: dict[str, Any]) -> None:
    """The risk badge and its reasons are GET /risk's for the station."""
    badge = page.locator("#risk [data-role=risk-level]")
    assert await badge.get_attribute("data-value") == want["level"]
    assert float(await badge.get_attribute("data-score")) == want["score"]
    shown = await page.evaluate("[...document.querySelectorAll('#risk-reasons li')].map(li => ({kind: "
                                "li.dataset.kind, alert: li.dataset.sourceAlert || null, points: "
                                "+li.dataset.points, link: !!li.querySelector('a')}))")
    assert [(c["kind"], c["source"].get("alert"), c["points"]) for c in want["contributions"]] == [
        (s["kind"], s["alert"], s["points"]) for s in shown]
    assert all(s["link"] == (s["kind"] != "alert_history") for s in shown), shown  # a closed alert: no link


async def test_vapor_and_safety_panels_show_the_apis_figures(redis_url: str, browser: Browser) -> None:
    tw = Twin(redis_url, stations=2, start_ts=REG_T0, reading_interval_s=60.0, vapor=True)
    try:
        district = tw.sim_district.district
        sid, quiet = district.stations[0].id, district.stations[1].id
        next(s for s in tw.sim.stations if s.id == quiet).vapor = None  # its monitor sends nothing
        blocked = next(n.nozzle_id for n in tw.sim_district.station_nozzles(sid)
                       if n.grade in GASOLINE_GRADES)
        _, fault = build_fault({"type": "vapor_blockage", "station": sid, "nozzle": blocked, "at": "0s",
                                "a_l": 0.8}, tw.sim.now, 7)
        tw.sim.add_fault(sid, fault)
        await tw.warm_up(61 * 3600.0, step_s=3600.0)  # two closed local days, the third under way
        await tw.start_server()
        async with httpx.AsyncClient(base_url=tw.base, timeout=30) as http:
            report = {"station": sid, "inspector": "张三", "checklist": {"灭火器": True, "静电接地": False},
                      "findings": ["油罐区警示标识缺失"], "severity": "major", "report_id": "R-2026-0603"}
            assert (await http.post("/api/v1/inspections", json=report)).json()["accepted"]
            now = tw.sim.now
            await tw.service.ingest([{"kind": "safety.reading", "ts": now, "station": sid, "entity": "",
                                      "source": "modbus-gd", "seq": 0, "device": "GD-01", "sensor": "gas_lel",
                                      "value": 30.0}], now=now)
            await tw.service.drain()
            vapor = (await http.get(f"/api/v1/stations/{sid}/vapor")).json()
            risk = (await http.get("/api/v1/risk", params={"station": sid})).json()[0]
            assert risk == next(r for r in (await http.get("/api/v1/risk")).json() if r["station"] == sid)
            assert vapor["status"] == "warning" and len(vapor["history"]) == 2
            codes = {c["source"].get("code") for c in risk["contributions"]}
            assert {"VAPOR_AL_WARNING", "INSPECTION_FINDING", "GAS_LEL"} <= codes

            offsite: list[str] = []
            page = await open_page(browser, offsite)
            await page.goto(f"{tw.base}/station/{sid}")
            await page.wait_for_selector("#vapor-nozzles tr[data-nozzle]")
            await page.wait_for_selector("#risk [data-role=risk-level]")
            await page.wait_for_selector("#safety-devices tr[data-device]")

            # Vapor: the status badge, the live figures and every nozzle's row of the last judged day.
            status = page.locator("#vapor [data-role=vapor-status]")
            assert await status.get_attribute("data-value") == "warning"
            assert await status.text_content() == "预警"
            pressure = await page.locator("#vapor dd[data-field=pressure_pa]").text_content()
            assert abs(float(pressure.replace(" Pa", "").replace(",", "")) - vapor["pressure_pa"]) <= 0.05
            assert await page.locator("#vapor dd[data-field=processor_state]").text_content() == {
                "running": "运行", "stopped": "停止"}[vapor["processor_state"]]
            last = vapor["history"][0]
            outlet = last["station"]["processor"]["outlet_max_hourly_g_m3"]
            assert f"{outlet:.2f} g/m³" in await page.locator("#vapor dd[data-field=outlet]").text_content()
            fills = vapor["fills_vs_transactions"]  # every monitored fill had its transaction here
            assert fills["matched"] > 100 and fills["unreported"] == 0 == fills["litres_disagree"], fills
            compared = await page.locator("#vapor dd[data-field=fills_vs_transactions]").text_content()
            assert compared.startswith(f"有交易 {fills['matched']:,} · 未上报（疑似隐匿销售） 0"), compared
            assert await page.locator("#vapor-nozzles").get_attribute("data-day") == last["day"]
            rows = await _cells(page, "#vapor-nozzles tr[data-nozzle]")
            records = {r["nozzle"]: r for r in last["nozzles"]}
            assert [r["id"] for r in rows] == [n["id"] for n in vapor["nozzles"]]
            for row, n in zip(rows, vapor["nozzles"], strict=True):
                rec = records[n["id"]]
                assert int(row["fills_judged"].replace(",", "")) == rec["fills_judged"], row
                assert row["median_a_l"] == f"{rec['median_a_l']:.3f}", row
                assert abs(_pct(row["share_in_range"]) - 100 * rec["share_in_range"]) <= 0.05 + 1e-9, row
                assert row["day_status"] == STATUS_ZH[rec["status"]], row
                assert row["last_a_l"] == f"{n['last_a_l']:.3f}", row
                assert int(row["warning_days"]) == n["warning_days"]
                judged = any(r["judged"] for d in vapor["history"] for r in d["nozzles"]
                             if r["nozzle"] == n["id"])
                assert row["now"] == ("alarm" if n["alarm"] else "warning" if n["warning"]
                                      else "compliant" if judged else "pending"), (row, n)
            bad = next(r for r in rows if r["id"] == blocked)
            assert float(bad["median_a_l"]) < 0.9 and bad["day_status"] == "预警" and bad["now"] == "warning"
            assert await page.evaluate("[...document.querySelectorAll('#vapor-alerts li')].map(li => "
                                       "li.dataset.alert)") == [a["id"] for a in vapor["alerts"]]
            chart = await page.evaluate("(() => { const o = FTPanels.vaporChart().getOption(); return "
                                        "{series: o.series.length, days: o.xAxis[0].data.length}; })()")
            assert chart == {"series": len(vapor["nozzles"]), "days": len(vapor["history"])}

            await page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            await page.screenshot(path=str(SHOTS / "station-panels.png"))

            # Risk: the level and score, each reason in order with a link to its alert on this page.
            await _risk_matches(page, risk)
            finding = next(c["source"]["alert"] for c in risk["contributions"]
                           if c["source"].get("code") == "INSPECTION_FINDING")
            await page.locator(f"#risk-reasons li[data-source-alert='{finding}'] a").click()
            await page.wait_for_function(f"[...document.querySelectorAll('.alert-item')].some(a => "
                                         f"a.dataset.alert === '{finding}' && a.classList.contains('flash'))")
            # Safety device and inspection findings.
            assert "30.0 %LEL" in await page.locator(
                "#safety-devices tr[data-device=GD-01] [data-field=reading]").text_content()
            item = page.locator(f"#inspections li[data-alert='{finding}']")
            assert await item.locator("[data-field=findings]").text_content() == "油罐区警示标识缺失"
            assert "静电接地" in await item.locator("[data-field=failed]").text_content()
            assert "张三" in await item.text_content()
            assert await page.evaluate(NO_JSON) == []
            assert await page.evaluate(NO_STATION_DUMP) == 0

            # Live: a second gas reading, now at the alarm level — the device row follows the state
            # message and the risk (re-read after the alert changed) the API's new figure.
            await tw.service.ingest([{"kind": "safety.reading", "ts": now + 30, "station": sid, "entity": "",
                                      "source": "modbus-gd", "seq": 1, "device": "GD-01",
                                      "sensor": "gas_lel", "value": 55.0}], now=now + 30)
            await tw.service.drain()
            again = (await http.get("/api/v1/risk", params={"station": sid})).json()[0]
            assert again["score"] != risk["score"]
            await page.wait_for_function("document.querySelector('#safety-devices tr[data-device=GD-01] "
                                         "[data-field=reading]').textContent.startsWith('55.0')",
                                         timeout=10_000)
            await page.wait_for_function(f"+document.querySelector('#risk [data-role=risk-level]')"
                                         f".dataset.score === {again['score']}", timeout=15_000)
            await _risk_matches(page, again)

            # English: the same panels in English words.
            await page.click("#lang")
            await page.wait_for_function("document.querySelector('#vapor [data-role=vapor-status]')"
                                         ".textContent === 'warning'")
            assert await page.locator("#risk-panel h2").text_content() == "Safety, inspections and risk"
            assert await page.locator("#vapor-nozzles th").nth(1).text_content() == "Fills judged"
            await page.click("#lang")
            await page.wait_for_function("document.querySelector('#vapor [data-role=vapor-status]')"
                                         ".textContent === '预警'")

            # A station without vapor data: one line, no table, no dump; its risk as the API says.
            await page.goto(f"{tw.base}/station/{quiet}")
            none = page.locator("#vapor [data-role=vapor-none]")
            await none.wait_for(timeout=10_000)
            assert await none.text_content() == "暂无油气回收数据"
            assert (await http.get(f"/api/v1/stations/{quiet}/vapor")).json()["status"] == "no_data"
            await page.wait_for_selector("#risk [data-role=risk-level]")
            await page.wait_for_timeout(1500)  # the live state's first paint has come and gone
            assert await page.locator("#vapor-nozzles").count() == 0
            assert await none.text_content() == "暂无油气回收数据"
            await _risk_matches(page, (await http.get("/api/v1/risk", params={"station": quiet})).json()[0])
            assert await page.locator("#risk [data-role=devices-none]").text_content() == "暂无安全设备数据"
            assert await page.locator("#risk [data-role=inspections-none]").text_content() == "暂无检查记录"
            assert await page.evaluate(NO_JSON) == []
            assert offsite == [] and page.errors == []  # type: ignore[attr-defined]
    finally:
        await tw.close()
