"""Placeholder until the UI lands."""


def main() -> int:
    print("the terminal UI is not built yet; use `lvmbench run --headless`")
    return 0
