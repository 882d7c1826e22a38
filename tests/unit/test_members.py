"""What the code at the cursor depends on: imports, ``expr.`` and ``call(``."""

from __future__ import annotations

import pytest

from tandem.context import builder, members
from tandem.context.index import WorkspaceIndex

ROOT = "/ws"

FILES = {
    "shop/__init__.py": "",
    "shop/pricing.py": (
        "TAX = 0.2\n\n"
        "def apply_volume_discount(unit_price: float, quantity: int) -> float:\n"
        '    """Price after the volume discount."""\n'
        "    return unit_price\n\n"
        "def _private() -> None:\n    pass\n"
    ),
    "shop/models.py": (
        "from shop.base import Record\n\n"
        "class Cart(Record):\n"
        '    """A shopping cart."""\n'
        "    def add(self, sku: str, quantity: int = 1) -> None:\n        pass\n"
        "    def total(self) -> float:\n        return 0.0\n"
    ),
    "shop/base.py": (
        "class Record:\n"
        "    def save(self, *, force: bool = False) -> None:\n        pass\n"
    ),
    "web/api.ts": (
        "export function fetchUser(id: string): Promise<User> {\n  return x;\n}\n"
        "export class Client {\n  get(path: string): string { return path; }\n}\n"
    ),
}


def index() -> WorkspaceIndex:
    idx = WorkspaceIndex()
    for name, text in FILES.items():
        idx.update(f"{ROOT}/{name}", text)
    return idx


def target(code: str, path: str = "shop/cart.py") -> members.Target | None:
    idx = index()
    full = f"{ROOT}/{path}"
    current = idx.update(full, code)
    assert current is not None
    return members.cursor_target(current, code, len(code), idx)


def names(found: members.Target | None) -> list[str]:
    assert found is not None
    return [s.name for s in found.members]


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("from shop import pricing\n\ndef f():\n    pricing.", id="from"),
        pytest.param("import shop.pricing as p\n\ndef f():\n    p.", id="alias"),
        pytest.param("import shop.pricing\n\nshop.pricing.", id="dotted"),
        pytest.param("from . import pricing\n\nx = pricing.app", id="relative"),
        pytest.param("from shop import pricing\nx = pricing . ", id="spaces"),
    ],
)
def test_a_module_imported_by_name_offers_its_public_members(code: str) -> None:
    assert names(target(code)) == ["TAX", "apply_volume_discount"]  # no _private


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(
            "from shop.models import Cart\n\ndef f():\n    cart = Cart()\n    cart.",
            id="constructor",
        ),
        pytest.param(
            "from shop import models\n\ncart = models.Cart()\ncart.",
            id="module-constructor",
        ),
        pytest.param(
            "from shop.models import Cart\n\ndef f(cart: Cart) -> None:\n    cart.",
            id="type-hint",
        ),
    ],
)
def test_an_instance_offers_its_class_and_base_members(code: str) -> None:
    assert names(target(code)) == ["Cart", "add", "total", "Record", "save"]


def test_self_offers_the_class_and_its_bases_from_other_files() -> None:
    code = (
        "from shop.base import Record\n\n"
        "class Order(Record):\n"
        "    def pay(self) -> None:\n"
        "        self."
    )
    assert names(target(code, "shop/order.py")) == ["Order", "pay", "Record", "save"]


def test_self_attribute_assigned_from_a_constructor() -> None:
    code = (
        "from shop.models import Cart\n\n"
        "class Checkout:\n"
        "    def __init__(self) -> None:\n"
        "        self.cart = Cart()\n\n"
        "    def run(self) -> None:\n"
        "        self.cart."
    )
    assert names(target(code, "shop/checkout.py"))[:3] == ["Cart", "add", "total"]


def test_a_call_being_typed_offers_the_signature() -> None:
    code = "from shop.pricing import apply_volume_discount\n\napply_volume_discount("
    found = target(code)
    assert found is not None and found.kind == "function"
    assert "quantity: int" in found.members[0].signature


def test_a_method_call_on_a_module_member() -> None:
    code = "from shop import models\n\nmodels.Cart.add("
    assert names(target(code)) == ["add"]


def test_unknown_names_resolve_to_nothing() -> None:
    assert target("import json\n\njson.") is None  # not in the workspace
    assert target("x = 1\nx.") is None
    assert target("print(") is None


def test_typescript_namespace_and_named_imports() -> None:
    code = "import * as api from './api';\n\napi."
    assert names(target(code, "web/app.ts")) == ["fetchUser", "Client", "get"]
    code = "import { Client } from './api';\n\nconst c = new Client();\nClient."
    assert names(target(code, "web/app.ts")) == ["Client", "get"]


def test_stable_context_lists_imported_modules_most_used_first() -> None:
    idx = index()
    code = (
        "from shop import pricing\nfrom shop.models import Cart\n\n"
        "def f(c: Cart) -> float:\n"
        "    a = pricing.apply_volume_discount(1.0, 2)\n"
        "    return pricing.TAX + a\n"
    )
    current = idx.update(f"{ROOT}/shop/cart.py", code)
    assert current is not None
    found = builder.stable_context(current, code, idx, 512, len)
    assert [f.path for f in found.files] == [
        f"{ROOT}/shop/base.py",
        f"{ROOT}/shop/models.py",
        f"{ROOT}/shop/pricing.py",
    ]
    # The budget goes to the most used import first.
    small = builder.stable_context(current, code, idx, 150, len)
    assert "apply_volume_discount" in small.symbols
    assert "Cart" not in small.symbols


def test_cursor_context_adds_only_what_the_stable_context_lacks() -> None:
    idx = index()
    code = "from shop import pricing\nimport shop.models as m\n\nx = m.Cart()\nx."
    current = idx.update(f"{ROOT}/shop/cart.py", code)
    assert current is not None
    stable = builder.stable_context(current, code, idx, 512, len)
    extra = builder.cursor_context(current, code, len(code), idx, stable, 160, len)
    # Cart's methods came with the import of shop.models; its base did not.
    assert "add" in stable.symbols and "add" not in extra.symbols
    assert "save" in extra.symbols
    empty = builder.Context()
    extra = builder.cursor_context(current, code, len(code), idx, empty, 160, len)
    assert "add" in extra.symbols


def test_build_keeps_the_floor_with_no_speed_budget() -> None:
    idx = index()
    code = "from shop import pricing\n\ndef f():\n    return pricing."
    current = idx.update(f"{ROOT}/shop/cart.py", code)
    assert current is not None
    found = builder.build(current, code, len(code), idx, 0, len, floor_tokens=256)
    assert "apply_volume_discount" in found.symbols
    assert builder.build(current, code, len(code), idx, 0, len) == builder.Context()
