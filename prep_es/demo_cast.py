"""The demo's cast: its users (role, name, top-up) and its kitchens in Los Angeles and San
Francisco, with the prefixes of their certificate numbers. ``prep_es.demo`` tells their story."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class KitchenSpec:
    """A demo kitchen as its host lists it; ``key`` names it in the story, ``host`` is
    the key of its host in ``DEMO_USERS``."""

    key: str
    host: str
    name: str
    description: str
    jurisdiction: str
    city: str
    address: str
    hourly_rate_cents: int
    capacity: int
    amenities: tuple[str, ...]
    instant_book: bool = False


DEMO_USERS: Final = (
    # (key, role, full name, email local part, top-up in cents)
    ("admin", "admin", "Ada Okonkwo", "admin", 0),
    ("analyst", "analyst", "Noah Fischer", "analyst", 0),
    ("maria", "host", "Maria Gonzalez", "maria.gonzalez", 0),
    ("james", "host", "James Chen", "james.chen", 0),
    ("aisha", "host", "Aisha Patel", "aisha.patel", 0),
    ("tom", "host", "Tom O'Brien", "tom.obrien", 0),
    ("priya", "customer", "Priya Raman", "priya.raman", 150_000),
    ("marcus", "customer", "Marcus Johnson", "marcus.johnson", 200_000),
    ("elena", "customer", "Elena Petrova", "elena.petrova", 120_000),
    ("diego", "customer", "Diego Alvarez", "diego.alvarez", 100_000),
    ("hannah", "customer", "Hannah Kim", "hannah.kim", 80_000),
    ("samuel", "customer", "Samuel Okafor", "samuel.okafor", 150_000),
    ("lucia", "customer", "Lucia Romano", "lucia.romano", 250_000),
)

DEMO_KITCHENS: Final = (
    KitchenSpec(
        "sunset",
        "maria",
        "Sunset Commissary",
        "Bright commissary off Sunset with two full lines, ideal for caterers and meal prep.",
        "los_angeles",
        "Los Angeles",
        "1234 Sunset Blvd, Los Angeles, CA 90026",
        4500,
        12,
        ("6-burner range", "convection oven", "walk-in cooler", "prep tables", "dry storage"),
        instant_book=True,
    ),
    KitchenSpec(
        "arts",
        "maria",
        "Arts District Kitchen Co.",
        "Large production kitchen in a converted warehouse with a loading dock.",
        "los_angeles",
        "Los Angeles",
        "820 E 3rd St, Los Angeles, CA 90013",
        6500,
        20,
        ("loading dock", "blast chiller", "walk-in freezer", "tilt skillet", "hood ventilation"),
    ),
    KitchenSpec(
        "koreatown",
        "maria",
        "Koreatown Kitchen Collective",
        "Compact shared kitchen with charcoal grills, popular with pop-ups.",
        "los_angeles",
        "Los Angeles",
        "3150 W 6th St, Los Angeles, CA 90020",
        4000,
        8,
        ("charcoal grill", "wok station", "reach-in refrigerator", "ice machine"),
        instant_book=True,
    ),
    KitchenSpec(
        "silverlake",
        "james",
        "Silver Lake Test Kitchen",
        "Small, well-lit test kitchen for recipe development and content shoots.",
        "los_angeles",
        "Los Angeles",
        "2855 Rowena Ave, Los Angeles, CA 90039",
        5500,
        6,
        ("induction range", "stand mixer", "photo lighting", "prep tables"),
        instant_book=True,
    ),
    KitchenSpec(
        "venice",
        "james",
        "Venice Beach Bakehouse",
        "Bakery with a deck oven and proofing cabinets, steps from Abbot Kinney.",
        "los_angeles",
        "Los Angeles",
        "1711 Abbot Kinney Blvd, Venice, CA 90291",
        5000,
        10,
        ("deck oven", "proofing cabinet", "sheeter", "spiral mixer"),
    ),
    KitchenSpec(
        "mission",
        "aisha",
        "Mission Street Kitchen",
        "Commissary in the Mission with a taqueria line and plenty of cold storage.",
        "san_francisco",
        "San Francisco",
        "2534 Mission St, San Francisco, CA 94110",
        7500,
        15,
        ("flat-top griddle", "walk-in cooler", "commercial dishwasher", "dry storage"),
        instant_book=True,
    ),
    KitchenSpec(
        "dogpatch",
        "aisha",
        "Dogpatch Commissary",
        "Industrial kitchen by the bay, fit for large catering and packaged foods.",
        "san_francisco",
        "San Francisco",
        "901 Tennessee St, San Francisco, CA 94107",
        8500,
        25,
        ("combi oven", "blast chiller", "loading dock", "walk-in freezer", "packaging station"),
    ),
    KitchenSpec(
        "soma",
        "aisha",
        "SoMa Shared Kitchen",
        "New shared kitchen with six stations for food-truck prep.",
        "san_francisco",
        "San Francisco",
        "375 7th St, San Francisco, CA 94103",
        7000,
        18,
        ("6-burner range", "fryer", "walk-in cooler", "truck parking"),
    ),
    KitchenSpec(
        "outersunset",
        "tom",
        "Outer Sunset Bakery",
        "Neighbourhood bakery kitchen, available in the afternoons.",
        "san_francisco",
        "San Francisco",
        "3801 Noriega St, San Francisco, CA 94122",
        6000,
        8,
        ("deck oven", "proofing cabinet", "stand mixer"),
    ),
    KitchenSpec(
        "bayview",
        "tom",
        "Bayview Food Hub",
        "Food-business incubator kitchen with a smoker and a small retail window.",
        "san_francisco",
        "San Francisco",
        "1550 Evans Ave, San Francisco, CA 94124",
        5500,
        12,
        ("smoker", "convection oven", "retail window", "prep tables"),
    ),
)

CITY_PREFIX: Final = {"los_angeles": "LA", "san_francisco": "SF"}
CERTIFICATE_NUMBER_PREFIX: Final = {
    "health_permit": "HP",
    "business_license": "BL",
    "fire_inspection": "FI",
    "liability_insurance": "LI",
    "food_handler": "FH",
}
