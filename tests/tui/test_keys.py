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
        for key, name in [*SCREEN_KEYS.items(), ("escape", "SqlScreen"), ("f3", "RunsScreen"),
                          ("enter", "RunDetailScreen")]:
            if key == "enter":
                await pilot.press("down")
            await pilot.press(key)
            await settle(pilot)
            assert type(app.screen).__name__ == name
            shown = {(b.binding.action, b.binding.description) for b in app.screen.active_bindings.values()
                     if b.binding.show}  # a binding of several keys (ctrl+r, ctrl+enter) is one footer entry
            footer_keys = list(app.screen.query_one(Footer).query(FooterKey))
            assert len(footer_keys) == len(shown), name
            descriptions = [w.description for w in footer_keys]
            if name == "SqlScreen" and key == "escape":  # out of the editor: ? and q act, and say so
                assert {"Help", "Quit", "CSV", "Copy row", "Edit"} <= set(descriptions)
            elif name == "SqlScreen":  # in it they would type: the footer says how to leave it
                assert {"Run", "History", "Complete", "Leave", "Quit"} <= set(descriptions) and "Help" not in descriptions
            elif name != "RunDetailScreen":
                assert {"Screens", "Help", "Quit"} <= set(descriptions), name
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
        listed = {(title, b.key) for title, bindings in app.screen.sections for b in bindings}
        await pilot.press("escape")
        assert type(app.screen).__name__ == "RunsScreen"
    # every key of every screen, of the SQL editor and of the questions the UI asks
    from lvmbench.tui.screens.launch import LaunchScreen
    from lvmbench.tui.screens.live import LiveScreen
    from lvmbench.tui.screens.runs import RunsScreen
    from lvmbench.tui.screens.compare import CompareScreen
    from lvmbench.tui.screens.sql import SqlEditor, SqlScreen
    from lvmbench.tui.screens.detail import RunDetailScreen
    from lvmbench.tui.widgets.dialogs import Choose, Confirm

    for holder in (LaunchScreen, LiveScreen, RunsScreen, CompareScreen, SqlScreen, SqlEditor, RunDetailScreen,
                   Confirm, Choose):
        assert {b.key for b in holder.BINDINGS} <= {key for _, key in listed}, holder.__name__
    assert {("Everywhere", k) for k in ("f1", "f5", "question_mark", "q", "ctrl+p", "ctrl+q")} <= listed
