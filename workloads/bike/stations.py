"""The generator's station table: a few hundred docks around Manhattan, Brooklyn, Queens, Jersey City and Hoboken.

Real Citi Bike stations change every month (over two thousand of them), so nothing at serving time reads this
table: the features hash a station id into slots (``features.py``) and take a station the model never saw like any
other. The table exists only so that ``generate.py`` can make rides with a learnable station structure: popular
docks, and a handful of *tourist* docks (parks, piers, the waterfront) where casual riders take long leisure loops.

Built from a fixed seed, with no network: the tourist docks are declared below by name and approximate position
(real places; their ids here are made up), the ordinary ones are drawn inside rough boxes of each area. Ids follow
the public files' two styles: ``dddd.dd`` for the New York docks (e.g. "6140.05") and a prefix and three digits in
New Jersey (e.g. "HB101", "JC115"). The same table every time: it is part of what a seed reproduces.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Where the generated docks are: (area, how many, lat range, lng range, id style, demand weight). Rough boxes, not
# shorelines: a dock in the river now and then does no harm to a generator.
AREAS = (
    ("Manhattan", 190, (40.700, 40.815), (-74.015, -73.935), "ny", 3.0),
    ("Brooklyn", 90, (40.640, 40.705), (-74.010, -73.920), "ny", 1.2),
    ("Queens", 30, (40.740, 40.770), (-73.955, -73.910), "ny", 0.8),
    ("Jersey City", 25, (40.710, 40.740), (-74.080, -74.035), "JC", 0.5),
    ("Hoboken", 15, (40.735, 40.755), (-74.040, -74.025), "HB", 0.5),
)

# Parks, piers and sights: where casual riders start most of their rides, and ride long.
TOURIST_DOCKS = (
    ("Central Park S & 6 Ave", "Manhattan", 40.7658, -73.9763),
    ("Grand Army Plaza & Central Park S", "Manhattan", 40.7644, -73.9737),
    ("Central Park West & W 72 St", "Manhattan", 40.7759, -73.9762),
    ("5 Ave & E 78 St", "Manhattan", 40.7766, -73.9639),
    ("Pier 40 - Hudson River Park", "Manhattan", 40.7291, -74.0107),
    ("West St & Chambers St", "Manhattan", 40.7175, -74.0132),
    ("12 Ave & W 40 St", "Manhattan", 40.7604, -74.0028),
    ("Vesey Pl & River Terrace", "Manhattan", 40.7153, -74.0166),
    ("Brooklyn Bridge Park - Pier 2", "Brooklyn", 40.6988, -73.9973),
    ("Grand Army Plaza & Plaza St West", "Brooklyn", 40.6730, -73.9706),
    ("Prospect Park West & 8 St", "Brooklyn", 40.6653, -73.9760),
    ("Hoboken Terminal - River St & Hudson Pl", "Hoboken", 40.7360, -74.0303),
)

_AVENUES = ("1 Ave", "2 Ave", "3 Ave", "Lexington Ave", "Park Ave", "Madison Ave", "5 Ave", "6 Ave", "7 Ave",
            "8 Ave", "9 Ave", "10 Ave", "11 Ave", "Broadway", "Amsterdam Ave", "Columbus Ave")
_STREETS = {
    "Brooklyn": ("Atlantic Ave", "Flatbush Ave", "Bedford Ave", "Myrtle Ave", "DeKalb Ave", "Fulton St",
                 "Court St", "Smith St", "Nostrand Ave", "Franklin Ave", "Union St", "President St"),
    "Queens": ("Vernon Blvd", "21 St", "Jackson Ave", "44 Dr", "Queens Plaza N", "31 Ave", "Broadway"),
    "Jersey City": ("Grove St", "Newark Ave", "Montgomery St", "Christopher Columbus Dr", "Marin Blvd", "Erie St"),
    "Hoboken": ("Washington St", "Hudson St", "Bloomfield St", "Garden St", "Willow Ave", "Park Ave"),
}
SEED = 20_210_201  # the month the public files took their current schema


@dataclass(frozen=True)
class Stations:
    """One row a dock, as parallel arrays (indexed 0..n-1)."""

    ids: np.ndarray  # object: str
    names: np.ndarray  # object: str
    area: np.ndarray  # object: str
    lat: np.ndarray
    lng: np.ndarray
    tourist: np.ndarray  # bool
    popularity: np.ndarray  # relative share of the rides that start here
    effect: np.ndarray  # log-factor on the duration of rides from here (hills, traffic lights, the park nearby)

    def __len__(self) -> int:
        return len(self.ids)

    def nearest(self, k: int) -> np.ndarray:
        """For each dock, its ``k`` nearest other docks (indices), nearest first."""
        lat, lng = self.lat[:, None], self.lng[:, None]
        # Degrees of longitude are shorter here: 1 deg lat ~ 111 km, 1 deg lng ~ 84 km at 40.7 N.
        d2 = ((lat - lat.T) * 111.0) ** 2 + ((lng - lng.T) * 84.0) ** 2
        np.fill_diagonal(d2, np.inf)
        return np.argsort(d2, axis=1, kind="stable")[:, :k]


def _ny_ids(rng: np.random.Generator, n: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        sid = f"{int(rng.integers(2000, 8999))}.{int(rng.integers(1, 16)):02d}"
        if sid not in taken:
            taken.add(sid)
            out.append(sid)
    return out


def _name(rng: np.random.Generator, area: str, lat: float) -> str:
    if area == "Manhattan":
        street = max(1, int((lat - 40.700) / 0.115 * 125))  # the street grid climbs with latitude
        side = "E" if rng.random() < 0.5 else "W"
        return f"{_AVENUES[int(rng.integers(len(_AVENUES)))]} & {side} {street} St"
    streets = _STREETS[area]
    a, b = rng.choice(len(streets), size=2, replace=False)
    return f"{streets[a]} & {streets[b]}"


@lru_cache(maxsize=1)
def load() -> Stations:
    """The table (built once a process; the same every time)."""
    rng = np.random.default_rng(SEED)
    ids: list[str] = []
    names: list[str] = []
    area: list[str] = []
    lat: list[float] = []
    lng: list[float] = []
    weight: list[float] = []
    taken: set[str] = set()
    for name, n, (lat_lo, lat_hi), (lng_lo, lng_hi), style, w in AREAS:
        la = rng.uniform(lat_lo, lat_hi, size=n).round(6)
        ln = rng.uniform(lng_lo, lng_hi, size=n).round(6)
        if style == "ny":
            ids += _ny_ids(rng, n, taken)
        else:
            ids += [f"{style}{101 + i:03d}" for i in range(n)]
            taken.update(ids[-n:])
        names += [_name(rng, name, float(x)) for x in la]
        area += [name] * n
        lat += la.tolist()
        lng += ln.tolist()
        weight += [w] * n
    n_ordinary = len(ids)
    for name, where, la, ln in TOURIST_DOCKS:
        if where == "Hoboken":
            sid = f"HB{101 + sum(a == 'Hoboken' for a in area):03d}"
            taken.add(sid)
        else:
            sid = _ny_ids(rng, 1, taken)[0]
        ids.append(sid)
        names.append(name)
        area.append(where)
        lat.append(la)
        lng.append(ln)
        weight.append(8.0)
    n = len(ids)
    tourist = np.arange(n) >= n_ordinary
    popularity = np.asarray(weight) * rng.lognormal(0.0, 0.8, size=n)
    effect = rng.normal(0.0, 0.18, size=n) + np.where(tourist, 0.10, 0.0)
    return Stations(ids=np.asarray(ids, dtype=object), names=np.asarray(names, dtype=object),
                    area=np.asarray(area, dtype=object), lat=np.asarray(lat), lng=np.asarray(lng),
                    tourist=tourist, popularity=popularity / popularity.sum(), effect=effect)
