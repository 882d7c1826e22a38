"""Settings for every test session.

Servers started by the tests size their prompts (the text around the cursor, the
context budget) from the model's speed. They get it pinned (``TANDEM_SPEED``,
prompt/generated tokens per second, close to a slow 2-core CPU's) so that what a
test sends the model is the same on every machine; the tests about sizing from a
measured speed set their own value, or ``TANDEM_SPEED=""`` to measure.
"""

from __future__ import annotations

import os

TEST_SPEED = "100/30"

os.environ.setdefault("TANDEM_SPEED", TEST_SPEED)
