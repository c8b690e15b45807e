"""Every footer key fits 80x24 on every screen, ``?`` lists each screen's keys, and the Runs screen
shows and cancels runs started elsewhere (a shell) while they train."""
from __future__ import annotations

import pytest
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from lvmbench.tui.app import LvmbenchApp

from .conftest import settle

SCREEN_KEYS = {"f1": "LaunchScreen", "f2": "LiveScreen", "f3": "RunsScreen", "f4": "CompareScreen",
               "f5": "SqlScreen"}


async def test_every_footer_key_is_visible_at_80x24(fixture_store):
    results, runs_dir = fixture_store
    app = LvmbenchApp(results=results, runs_dir=runs_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        for key, name in [*SCREEN_KEYS.items(), ("f3", "RunsScreen"), ("enter", "RunDetailScreen")]:
            if key == "enter":
                await pilot.press("down")
            await pilot.press(key)
            await settle(pilot)
            assert type(app.screen).__name__ == name
            shown = [b for b in app.screen.active_bindings.values() if b.binding.show]
            footer_keys = list(app.screen.query_one(Footer).query(FooterKey))
            assert len(footer_keys) == len(shown), name
            print(name, [(w.description, w.region.x, w.region.right) for w in footer_keys])
            for widget in footer_keys:
                region = widget.region
                assert region.width > 0 and region.right <= 80, f"{name}: {widget.description} cut at 80 columns"


async def test_question_mark_opens_help_listing_each_screens_keys(fixture_store):
    results, runs_dir = fixture_store
    app = LvmbenchApp(results=results, runs_dir=runs_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3")
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert type(app.screen).__name__ == "HelpScreen"
        text = " ".join(str(title) + " " + " ".join(b.description for b in bindings)
                        for title, bindings in app.screen.sections)
        for expected in ("Everywhere", "Help", "Launch run", "Cancel", "Filter", "Resume", "CSV", "Back"):
            assert expected in text
        await pilot.press("escape")
        assert type(app.screen).__name__ == "RunsScreen"
