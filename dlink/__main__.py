"""The `dlink` command (`python -m dlink`): one entry point to the package's module commands.

Each command is the module's own command line with its own --help; this file only dispatches,
importing a module when its command runs, so `dlink --help` answers at once.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module, arguments put before the user's, one line for --help)
COMMANDS = {
    "build": ("dlink.data", ["build"], "build the embedded offline dataset (data/embedded/)"),
    "embed": ("dlink.distributed", ["extract"], "embed AudioCaps/Clotho splits into the notebooks' cache"),
    "train-clap": ("dlink.encoders.embedded_clap", [], "train and score the embedded dataset's CLAP heads"),
    "train-captioner": (
        "dlink.distributed",
        ["train-captioner"],
        "fit a captioner, optionally with torchrun",
    ),
    "run": ("dlink.runner.pipeline", [], "run the numbered notebooks in order, resumably (as ./run_all.sh)"),
    "lab": ("dlink.runner.lab", [], "open the notebooks in JupyterLab with the project's kernel"),
    "publish": (
        "dlink.runner.pipeline",
        ["publish"],
        "copy a finished default run's outputs into notebooks/",
    ),
    "strip": ("dlink.runner.pipeline", ["strip"], "clear notebooks' outputs"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: dlink COMMAND [OPTIONS]   (or python -m dlink COMMAND [OPTIONS])",
        "",
        "Diffusion-Link, reproducible: the package's commands. `dlink COMMAND --help` gives each one's options.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {doc}" for name, (_, _, doc) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] not in COMMANDS:
        print(f"dlink: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}\n", file=sys.stderr)
        print(usage(), file=sys.stderr)
        return 2
    module, prefix, _ = COMMANDS[argv[0]]
    return importlib.import_module(module).main(prefix + argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
