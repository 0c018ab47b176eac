"""The demo world's part of DESIGN §10: a catalogue of common medicines across A, B and C,
a policy per merchant kind for the current year, and each card's coverage today."""

from __future__ import annotations

from datetime import date
from typing import Any

from pos_gateway.domain.audit import SYSTEM, Actor
from pos_gateway.domain.coverage import coverage_on
from pos_gateway.services import settlement
from pos_gateway.store import insurance

_DEMO = Actor(SYSTEM, "pos-gateway demo-data")

# (code, name, category, self_pay_bp): common medicines of a Chinese community pharmacy.
CATALOGUE = (
    ("XJ01CAA001", "阿莫西林胶囊 Amoxicillin capsules 0.25g x24", "A", 0),
    ("XJ01DCA001", "头孢呋辛酯片 Cefuroxime axetil tablets 0.25g x12", "A", 0),
    ("XJ01FAA001", "阿奇霉素片 Azithromycin tablets 0.25g x6", "A", 0),
    ("XN02BEA001", "对乙酰氨基酚片 Paracetamol tablets 0.5g x20", "A", 0),
    ("XM01AEA001", "布洛芬缓释胶囊 Ibuprofen SR capsules 0.3g x20", "A", 0),
    ("XC09AAA001", "卡托普利片 Captopril tablets 25mg x100", "A", 0),
    ("XC08CAA001", "硝苯地平缓释片 Nifedipine SR tablets 20mg x30", "A", 0),
    ("XC07ABA001", "美托洛尔片 Metoprolol tablets 25mg x20", "A", 0),
    ("XA10BAA001", "二甲双胍片 Metformin tablets 0.5g x48", "A", 0),
    ("XA10AB0001", "胰岛素注射液 Insulin injection 400IU", "A", 0),
    ("XB01ACA001", "阿司匹林肠溶片 Aspirin EC tablets 100mg x30", "A", 0),
    ("XA02BCA001", "奥美拉唑肠溶胶囊 Omeprazole EC capsules 20mg x14", "A", 0),
    ("XR06AXA001", "氯雷他定片 Loratadine tablets 10mg x6", "A", 0),
    ("XC10AAA001", "辛伐他汀片 Simvastatin tablets 20mg x10", "A", 0),
    ("XC09CAA001", "缬沙坦胶囊 Valsartan capsules 80mg x7", "B", 1000),
    ("XC08CAA101", "氨氯地平片 Amlodipine besylate tablets 5mg x28", "B", 1000),
    ("XC10AAA101", "阿托伐他汀钙片 Atorvastatin calcium tablets 20mg x7", "B", 1500),
    ("XA10BHA001", "西格列汀片 Sitagliptin tablets 100mg x7", "B", 2000),
    ("XB01ACA101", "氯吡格雷片 Clopidogrel tablets 75mg x7", "B", 1500),
    ("XR03AKA001", "沙美特罗替卡松吸入剂 Salmeterol/fluticasone inhaler", "B", 2000),
    ("XA02BCA101", "雷贝拉唑钠肠溶片 Rabeprazole EC tablets 10mg x14", "B", 1000),
    ("XJ05ABA001", "奥司他韦胶囊 Oseltamivir capsules 75mg x10", "B", 1000),
    ("ZA04AAA001", "复方丹参滴丸 Compound Danshen dripping pills x180", "B", 2000),
    ("ZA01BAA001", "连花清瘟胶囊 Lianhua Qingwen capsules x24", "B", 1000),
    ("ZA06AAA001", "板蓝根颗粒 Banlangen granules 10g x20", "B", 500),
    ("ZA12AAA001", "六味地黄丸 Liuwei Dihuang pills x120", "B", 1000),
    ("XD07ACA001", "糠酸莫米松乳膏 Mometasone furoate cream 10g", "B", 1000),
    ("XS01AAA001", "左氧氟沙星滴眼液 Levofloxacin eye drops 5ml", "B", 500),
    ("XA11GAA001", "维生素C泡腾片 Vitamin C effervescent tablets x20", "C", 0),
    ("XA11JAA001", "复合维生素片 Multivitamin tablets x60", "C", 0),
    ("XA12AXA001", "钙尔奇碳酸钙D3片 Calcium carbonate D3 tablets x60", "C", 0),
    ("ZX00AAA001", "阿胶 Donkey-hide gelatin 250g", "C", 0),
    ("XV06DXA001", "蛋白粉 Protein powder 400g", "C", 0),
    ("XD11AXA001", "医用护肤霜 Medical skin-care cream 50g", "C", 0),
    ("XV07AYA001", "医用口罩 Medical masks x10", "C", 0),
    ("XV04CAA001", "血糖试纸 Blood glucose test strips x50", "C", 0),
)

# Fen and basis points. A pharmacy visit has a small deductible and a modest share; a
# hospital's deductible is larger, its share higher, its cap far higher.
POLICIES = {
    "pharmacy": {"deductible": 5_000, "fund_ratio_bp": 7_000, "annual_cap": 300_000},
    "hospital": {"deductible": 80_000, "fund_ratio_bp": 8_500, "annual_cap": 15_000_000},
}


async def load_demo_settlement(pool: Any, today: date) -> dict[str, Any]:
    """Load (or reload, the same) the catalogue and this year's policies; return them as
    the demo JSON shows them."""
    items = [{"code": c, "name": n, "category": k, "self_pay_bp": bp} for c, n, k, bp in CATALOGUE]
    await settlement.load_catalogue(pool, items, actor=_DEMO)
    await settlement.load_policies(
        pool,
        [{"merchant_kind": kind, "year": today.year, **p} for kind, p in POLICIES.items()],
        actor=_DEMO,
    )
    return {"catalogue": items, "policy": {kind: dict(p) for kind, p in POLICIES.items()}}


async def covered_today(pool: Any, ssn: str, today: date) -> bool:
    """The §5 rule (suspension included) on the business date."""
    async with pool.acquire() as conn:
        paid = await insurance.contribution_months(conn, ssn, date(1, 1, 1), today)
        suspensions = await insurance.suspensions_of(conn, ssn)
    return coverage_on(today, [r["month"] for r in paid], suspensions).covered
