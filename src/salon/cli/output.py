"""Where the CLI writes: rich consoles that never wrap or cut when piped."""

from __future__ import annotations

from rich.console import Console, ConsoleDimensions
from rich.text import Text

# Width used when the output is not a terminal: lines are as long as their content
# (rich does not pad to the width), so nothing is wrapped or truncated for a script.
UNBOUNDED_WIDTH = 100_000


class CliConsole(Console):
    """A Console that lays out for the terminal when there is one, else never wraps.

    Rich falls back to 80 columns (or ``$COLUMNS``) when stdout is a pipe or a
    file: an error line split in two, a table column cut with "…". Piped, this
    console is as wide as its longest line instead, whatever ``$COLUMNS`` says.
    The stream is looked up on every write (a test runner swaps ``sys.stdout``),
    and so is the width.
    """

    @property
    def size(self) -> ConsoleDimensions:
        dimensions = Console.size.fget(self)  # type: ignore[attr-defined]
        if not self.is_terminal:  # even if $COLUMNS says otherwise: a script reads this
            return ConsoleDimensions(UNBOUNDED_WIDTH, dimensions.height)
        return dimensions

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


console = CliConsole(soft_wrap=False)
err = CliConsole(stderr=True)


def error_line(message: str) -> Text:
    """``error: <message>``, the message taken literally (no rich markup in it)."""
    return Text.assemble(("error:", "red"), " ", message)
