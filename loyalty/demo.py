"""Demo data, seeded on the first run only: staff of every role, a few hundred members (some
in reps' books, the rest in the pool) and their purchases and returns over 18 months."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from rich.progress import Progress

from loyalty.auth import Principal, staff_principal
from loyalty.errors import Conflict
from loyalty.infrastructure import db
from loyalty.marketing import automatic, delivery
from loyalty.marketing import schemas as marketing_schemas
from loyalty.marketing import segments as marketing_segments
from loyalty.marketing import service as offers
from loyalty.members import schemas as member_schemas
from loyalty.points import schemas as points_schemas
from loyalty.referrals import service as referral_service
from loyalty.rewards import catalog as reward_catalog
from loyalty.rewards import schemas as reward_schemas
from loyalty.rewards import vouchers as reward_vouchers
from loyalty.settings import Settings
from loyalty.staff import schemas as staff_schemas
from loyalty.staff import service as staff_service
from loyalty.staff.tables import Staff
from loyalty.workflows import returns, sales
from loyalty.workflows.enrolment import enrol_member

DEMO_MEMBERS = 300
SURNAMES = [
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Chen",
    "Yang",
    "Huang",
    "Zhao",
    "Wu",
    "Zhou",
    "Xu",
    "Sun",
]
GIVEN = ["Wei", "Fang", "Na", "Min", "Jing", "Lei", "Jun", "Yan", "Tao", "Ming", "Hui", "Xin", "Yu"]
PRODUCTS = [
    ("TEA-LJ", "tea", "168.00"),
    ("TEA-PU", "tea", "328.00"),
    ("WINE-BX", "wine", "459.00"),
    ("GIFT-BOX", "gifts", "88.00"),
    ("CUP-SET", "general", "59.90"),
    ("KETTLE", "general", "239.00"),
    ("TEA-GIFT", "gifts", "1288.00"),
    ("WINE-CASE", "wine", "2680.00"),
]
HOBBIES = ["golf", "tea ceremony", "hiking", "calligraphy", "photography", "cooking"]

DEMO_STAFF = [
    ("admin", "admin", None, "Ada Admin"),
    ("gm", "general_manager", None, "Grace General"),
    ("manager", "manager", "east", "Ming Manager"),
    ("rep", "rep", "east", "Ravi Rep"),
    ("rep2", "rep", "east", "Rosa Rep"),
    ("service", "service", "service", "Sam Service"),
    ("marketing", "marketing", "marketing", "Mei Marketing"),
    ("mktmanager", "manager", "marketing", "Mona Marketing Manager"),
]


def logins_file(settings: Settings):
    return settings.data_dir / "demo-logins.json"


async def seed_if_empty(settings: Settings) -> list[dict[str, Any]]:
    """Seed once; on later runs return the logins kept in the data folder."""
    path = logins_file(settings)
    if await Staff.count() > 0:
        return json.loads(path.read_text()) if path.exists() else []
    logins = []
    with Progress(transient=True) as progress:
        task = progress.add_task("seeding demo staff", total=len(DEMO_STAFF))
        for username, role, department, name in DEMO_STAFF:
            created = await staff_service.create_staff(
                staff_schemas.StaffCreate(
                    username=username, role=role, department=department, display_name=name
                )
            )
            logins.append({"username": username, "password": created.password, "role": role})
            progress.advance(task)
    # Historic purchases upgraded members as they were posted; an evaluation now starts the
    # grace period for those whose spend has since aged out of the window.
    from loyalty.tiers import evaluation as tier_evaluation

    await tier_evaluation.evaluate()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(logins, indent=2))
    path.chmod(0o600)
    await seed_members(DEMO_MEMBERS)
    return logins


async def seed_members(count: int, seed: int = 2026) -> None:
    """Members enrolled by reps and by the shop, with purchases over the last 18 months."""
    rng = random.Random(seed)
    staff = {row["username"]: row for row in await Staff.select()}
    enrolers = [
        staff_principal(row["id"], row["username"], row["role"], row["department"])
        for row in (staff["rep"], staff["rep2"], staff["admin"])
    ]
    now = datetime.now(UTC)
    codes: list[str] = []
    with Progress() as progress:
        task = progress.add_task("seeding demo members and purchases", total=count)
        for i in range(count):
            enroler = enrolers[i % 3]
            member_id = await _enrol_demo_member(rng, i, enroler, codes, now)
            await _demo_purchases(rng, i, member_id, enroler, now)
            progress.advance(task)
    # Historic purchases upgraded members as they were posted; an evaluation now starts the
    # grace period for those whose spend has since aged out of the window.
    from loyalty.tiers import evaluation as tier_evaluation

    await tier_evaluation.evaluate()
    await seed_rewards(enrolers[-1])
    await seed_marketing(staff)


async def _enrol_demo_member(
    rng: random.Random, i: int, enroler: Principal, codes: list[str], now: datetime
) -> UUID:
    """The i-th demo member; their referral code joins `codes` for later members to use."""
    name = f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}"
    # One in seven came on a friend's invitation.
    referral_code = rng.choice(codes) if codes and rng.random() < 1 / 7 else None
    member = await enrol_member(
        member_schemas.MemberCreate(
            name=name,
            phone=f"+86139{i:08d}",
            email=f"{name.lower().replace(' ', '.')}.{i}@example.com",
            birthday=(now - timedelta(days=rng.randint(20 * 365, 70 * 365))).date(),
            hobbies=rng.sample(HOBBIES, 2),
            tags=["demo"],
            contact_preferences=member_schemas.ContactPreferences(
                channels=["wechat", "email"],
                consents=[
                    member_schemas.Consent(channel="email", granted=True, method="demo seed")
                ],
            ),
            referral_code=referral_code,
        ),
        enroler,
    )
    async with db.connection() as conn:
        codes.append(await referral_service.issue_code(conn, member.id))
    return member.id


async def _demo_purchases(
    rng: random.Random, i: int, member_id: UUID, enroler: Principal, now: datetime
) -> None:
    """The member's purchases over the last 18 months, one in twenty partly returned."""
    # Most members buy now and then; one in ten is a big spender (silver or gold).
    big_spender = rng.random() < 0.1
    count = rng.randint(8, 16) if big_spender else rng.choice([0, 1, 2, 3, 4, 6, 9])
    for n in range(count):
        sku, category, price = rng.choice(PRODUCTS[-2:] if big_spender else PRODUCTS)
        quantity = rng.randint(1, 3)
        when = now - timedelta(days=rng.uniform(0, 548), hours=rng.uniform(0, 12))
        external_id = f"DEMO-{i}-{n}"
        await sales.post_purchase(
            points_schemas.PurchaseCreate(
                external_id=external_id,
                occurred_at=when,
                store=rng.choice(["Shanghai Jing'an", "Beijing Sanlitun", "Online shop"]),
                currency="CNY",
                lines=[
                    points_schemas.PurchaseLineCreate(
                        sku=sku, quantity=quantity, unit_price=Decimal(price), category=category
                    )
                ],
                total=Decimal(price) * quantity,
                member_id=member_id,
            ),
            enroler,
        )
        if rng.random() < 0.05:
            await returns.post_return(
                external_id,
                points_schemas.ReturnCreate(
                    return_id=f"{external_id}-R",
                    lines=[points_schemas.ReturnLineCreate(quantity=1, line_no=1)],
                    reason="demo return",
                ),
                enroler,
            )


async def seed_rewards(admin: Principal) -> None:
    """A small catalog: goods, vouchers (generated and from a pool), event seats, a service."""
    catalog = [
        reward_schemas.RewardCreate(
            name="Jasmine tea gift tin",
            kind="goods",
            points_cost=800,
            stock=200,
            description="150 g of spring jasmine tea in a gift tin.",
        ),
        reward_schemas.RewardCreate(
            name="CNY 50 shopping voucher",
            kind="voucher",
            points_cost=2500,
            description="Valid in every store and online for 90 days.",
        ),
        reward_schemas.RewardCreate(
            name="Partner cinema ticket",
            kind="voucher",
            voucher_source="pool",
            points_cost=1200,
            description="One 2D ticket at partner cinemas.",
        ),
        reward_schemas.RewardCreate(
            name="Spring tea tasting evening",
            kind="event_seat",
            points_cost=1500,
            stock=30,
            event_at=datetime.now(UTC) + timedelta(days=40),
            per_member_limit=2,
            description="An evening with our tea masters; bring a friend.",
        ),
        reward_schemas.RewardCreate(
            name="Home visit by a tea sommelier",
            kind="bonus_service",
            points_cost=6000,
            eligible_tiers=["gold", "platinum", "diamond"],
            per_member_limit=1,
            description="A private tasting at home for up to six guests.",
        ),
    ]
    for data in catalog:
        reward = await reward_catalog.create_reward(data, admin)
        if data.voucher_source == "pool":
            await reward_vouchers.import_vouchers(
                reward.id,
                reward_schemas.VoucherImportCreate(
                    codes=[f"CINEMA-{n:04d}" for n in range(1, 101)]
                ),
                admin,
            )


async def seed_marketing(staff: dict[str, Any]) -> None:
    """Saved segments, and offers in each state: a draft, one awaiting approval, one sent
    (with its results), and an automatic birthday offer that has run this month."""
    author, approver = (
        staff_principal(row["id"], row["username"], row["role"], row["department"])
        for row in (staff["marketing"], staff["mktmanager"])
    )
    Filter = marketing_schemas.SegmentFilter
    gold = None
    for name, description, f in (
        ("Gold members", "Every gold member.", Filter(tiers=["gold"])),
        (
            "Lapsing big spenders",
            "Spent CNY 2,000 in a year, nothing for 90 days.",
            Filter(spend_min=Decimal("2000"), days_since_purchase_min=90),
        ),
        ("Email subscribers", "Members who agreed to email.", Filter(consents=["email"])),
    ):
        segment = await marketing_segments.create(
            marketing_schemas.SegmentCreate(name=name, description=description, filter=f), author
        )
        gold = gold or segment
    now = datetime.now(UTC)

    def offer(title: str, title_zh: str, body: str, body_zh: str, **fields: Any):
        return marketing_schemas.OfferCreate(
            title_en=title,
            title_zh=title_zh,
            body_en=body,
            body_zh=body_zh,
            valid_from=fields.pop("valid_from", now - timedelta(hours=1)),
            valid_until=fields.pop("valid_until", now + timedelta(days=30)),
            **fields,
        )

    await offers.create_offer(
        offer(
            "Autumn wine weekend",
            "秋季葡萄酒周末",
            "Double points on every wine this weekend.",
            "本周末所有葡萄酒双倍积分。",
            benefit="bonus_points",
            bonus_multiplier=Decimal("2"),
        ),
        author,
    )
    waiting = await offers.create_offer(
        offer(
            "Silver tea tasting",
            "银卡会员品茶会",
            "Silver members are invited to a tea tasting in store.",
            "诚邀银卡会员到店品茶。",
            target_tiers=["silver"],
        ),
        author,
    )
    await offers.submit(waiting.id, author)
    sent = await offers.create_offer(
        offer(
            "Gold members' pu'er preview",
            "金卡会员普洱新品抢先看",
            "Taste this year's pu'er before anyone else, with 20% off.",
            "抢先品鉴今年的普洱新品，享八折优惠。",
            segment_id=gold.id if gold else None,
        ),
        author,
    )
    await offers.submit(sent.id, author)
    try:
        await offers.approve(sent.id, approver)
        await delivery.send_offer(sent.id)
    except Conflict:
        pass  # no gold member in this seed: it stays awaiting approval
    birthday = await offers.create_offer(
        offer(
            "Happy birthday",
            "生日快乐",
            "A birthday gift is waiting for you in store this month.",
            "本月到店即可领取您的生日礼物。",
            auto_kind="birthday",
            valid_until=now + timedelta(days=365),
        ),
        author,
    )
    await offers.approve(birthday.id, approver)
    await automatic.run()
